# age_bias.gp — the score-accumulation bias that A2SF corrects, from kvtrace analyze.
# (a) top left: for each relative-age bin (0 = newest ... 1 = oldest), the share
#     of the kept top-B set that H2O, A2SF at every alpha and the per-row ideal
#     take from it (mean over rows, heads and sequences, 95 % interval); the
#     oldest third is shaded: H2O's excess there over ideal is the bias.
# (b) top right: Spearman correlation of each score with token age per layer.
# (c) bottom: the raw end-of-sequence scores by position (sequence 0, mean over
#     heads): H2O beside the rows it sums (its own two axes), and the other
#     scores each divided by its maximum (log axis), so that all are readable.
# Data: share (blocks per method: bin_centre share low high), rho (blocks per
# score: layer rho low high), raw (position then one column per score).
# Variables: share, rho, raw, bins, layers, K, title, title_share, title_raw,
# series/colours/dashes/points (methods), score_series/score_colours/score_dashes/score_points.
load "scripts/common.gp"
M = words(series)
score_dash(k) = word(score_dashes, k) + 0
score_point(k) = word(score_points, k) + 0
set multiplot title title noenhanced
top = 0.56
# (a) share of the kept set by age
set origin 0, 1 - top - 0.03
set size 0.5, top
set key outside bottom center horizontal maxrows 3 noenhanced
set title title_share noenhanced
set xlabel "relative age of the token (t - i)/t: 0 = newest, 1 = oldest"
set ylabel "share of the kept top-B set (%)"
set xrange [0:1]
set xtics 0.2
set yrange [0:*]
set object 1 rect from 2.0/3, graph 0 to 1, graph 1 behind fc rgb "#f3e6c8" fs solid 1.0 noborder
set label 1 "oldest third" at 5.0/6, graph 0.95 center font smallfont
set style fill transparent solid 0.15 noborder
plot for [m=1:M] share index (m-1) using 1:(100*$3):(100*$4) with filledcurves lc rgb colour(m) notitle, \
     for [m=1:M] share index (m-1) using 1:(100*$2) with linespoints lw 1.6 ps 0.7 lc rgb colour(m) dt dash(m) \
         pt point(m) title label(m)
unset object 1
unset label 1
# (b) Spearman with age per layer
set origin 0.5, 1 - top - 0.03
set size 0.5, top
set title "Spearman(score, token age) per layer, 95% CI"
set xlabel "layer"
set ylabel "Spearman correlation"
set xrange [-0.5:layers-0.5]
set xtics 1
set yrange [-1:1]
set ytics 0.5
set arrow 1 from graph 0, first 0 to graph 1, first 0 nohead lc rgb "#888888" dt 2
w = 0.7 / K
plot for [k=1:K] rho index (k-1) using ($1 - 0.35 + (k - 0.5) * w):2:3:4 with yerrorbars lw 1.2 ps 0.7 \
     lc rgb word(score_colours, k) pt score_point(k) title word(score_series, k)
unset arrow 1
# (c) raw scores: H2O's sum beside the rows it sums over (its own two axes);
#     the age-free and forgetting scores normalised to their maximum (log axis)
set key outside bottom center horizontal maxrows 2 noenhanced samplen 2
set origin 0, 0
set size 0.5, 0.4
set title title_raw noenhanced
set xrange [*:*]
set yrange [0:*]
set xtics auto
set ytics auto nomirror
set format y "%g"
set xlabel "token position i (0 = first)"
set ylabel "H2O score (sum of attention)"
set y2label "rows accumulated T - i"
set y2tics auto format "%g" tc rgb word(score_colours, 2)
set y2range [0:*]
plot raw using 1:2 with lines lw 1.2 lc rgb word(score_colours, 1) title word(score_series, 1), \
     raw using 1:3 axes x1y2 with lines lw 1.2 dt 2 lc rgb word(score_colours, 2) title word(score_series, 2)
unset y2tics
unset y2label
set origin 0.5, 0
set size 0.5, 0.4
set title "the other scores, each over its maximum" noenhanced
set logscale y
set format y logformat
set yrange [*:1.5]
set ylabel "score / its maximum"
array maxima[K]
do for [k=3:K] { stats raw using (column(k + 1)) nooutput; maxima[k] = STATS_max }
plot for [k=3:K] raw using 1:(column(k + 1) / maxima[k]) with lines lw 1.2 lc rgb word(score_colours, k) \
         dt score_dash(k) title word(score_series, k)
unset multiplot
