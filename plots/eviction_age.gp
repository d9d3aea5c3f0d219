# eviction_age.gp — how old tokens are when each configuration evicts them.
# Top: the cumulative share of evictions by age (a vertical step at every age
# that occurs, so a policy that always evicts at one age is one visible step).
# Bottom: a box per configuration (5, 25, 50, 75, 95 % of the ages; the point
# is the median).
# Data: data = blocks of (age, cumulative share); boxes = one block per
# series: index p5 p25 median p75 p95 mean evictions.
# Variables: data, boxes, out, title ("|" between lines), and common.gp's series styles.
load "scripts/common.gp"
n = words(series)
set multiplot title lines(title) noenhanced
# top panel: cumulative distributions, key to the right (or below when narrow)
set origin 0, 0.42
set size 1, (narrow ? 0.53 : 0.53)
set logscale x
set format x "%g"
set xrange [0.9:*]
set autoscale xfixmax
set xlabel "age at eviction t - i (tokens, log scale)"
set ylabel "share of evictions at this age or younger"
set yrange [0:1]
set ytics 0.25
plot for [i=1:n] data index (i-1) using 1:2 with linespoints pi 24 ps 0.7 lw 1.5 lc rgb colour(i) dt dash(i) \
         pt point(i) title label(i), \
     for [i=1:n] boxes index (i-1) using 4:(0.5) with points pt point(i) ps 0.9 lc rgb colour(i) notitle
# bottom panel: one box per configuration, ages on a log axis
set origin 0, 0
set size 1, 0.42
unset key
set logscale y
set format y "%g"
unset logscale x
set format x "%g"
set autoscale xfix
set xrange [0.3:n+0.7]
set yrange [*:*]
set xlabel ""
set ylabel "age at eviction"
set ytics auto
set xtics rotate by 30 right scale 0 font ",8"
set xtics () 
do for [i=1:n] { set xtics add (label(i) i) }
set boxwidth 0.55
plot for [i=1:n] boxes index (i-1) using 1:3:2:6:5 with candlesticks whiskerbars 0.5 lw 1.2 lc rgb colour(i) \
         dt 1 fs solid 0.25 border notitle, \
     for [i=1:n] boxes index (i-1) using 1:4 with points pt point(i) ps 1 lc rgb colour(i) notitle
unset multiplot
