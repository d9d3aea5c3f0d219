# age_bias.gp — the age bias of accumulated attention, the picture that explains A2SF.
# Left: one head; right: the mean over every layer and head. Data columns:
#   position  h2o  accumulations  mean_attention  a2sf  h2o_mean  accumulations_mean  mean_attention_mean  a2sf_mean
# Variables: data, out, title, title1 (left panel), title2 (right panel), alpha.
load "scripts/common.gp"
set multiplot layout 1,2 title title noenhanced
set xlabel "token position i (0 = first token)"
set ylabel "score at the end of the sequence (attention mass)"
set y2label "rows accumulated, T - i"
set ytics nomirror
set y2tics
set logscale y
set key inside top right box opaque
set title title1 noenhanced
plot data using 1:2 with lines lw 2 lc rgb colour("h2o") title "H2O score: sum of attention", \
     data using 1:5 with lines lw 2 lc rgb colour("a2sf") title sprintf("A2SF score, alpha = %s", alpha), \
     data using 1:4 with lines lw 1 lc rgb "#999999" title "mean attention per row", \
     data using 1:3 axes x1y2 with lines lw 2 dt 2 lc rgb "#444444" title "accumulations T - i (right axis)"
set title title2 noenhanced
plot data using 1:6 with lines lw 2 lc rgb colour("h2o") title "H2O score: sum of attention", \
     data using 1:9 with lines lw 2 lc rgb colour("a2sf") title sprintf("A2SF score, alpha = %s", alpha), \
     data using 1:8 with lines lw 1 lc rgb "#999999" title "mean attention per row", \
     data using 1:7 axes x1y2 with lines lw 2 dt 2 lc rgb "#444444" title "accumulations T - i (right axis)"
unset multiplot
