# value_norm.gp — VATP's premise, that attention sinks carry small value
# vectors, tested per layer.
# Left: value L1 norms of sequence 0's tokens per layer, the other tokens and
# the sinks side by side (boxes: 5, 25, 50, 75, 95 %; points: the medians).
# Middle: the sink/other norm ratio per layer over every sequence and head
# (95 % interval); VATP expects well below 1.  Right: value norm against the
# attention a token receives (one head), sinks marked.
# Data: boxes (block 0 others, 1 sinks: x layer p5 p25 median p75 p95 mean n),
# ratio (layer ratio low high n), scatter (attention value_norm sink position).
# Variables: boxes, ratio, scatter, layers, out, title ("|" between lines), title_scatter, logformat.
load "scripts/common.gp"
set multiplot layout 1,3 title lines(title) noenhanced
set key outside bottom center horizontal
set xrange [-0.6:layers-0.4]
set xtics 1
set xlabel "layer"
set ylabel "value L1 norm ||v_i||_1"
set title "value norms: others vs sinks"
set boxwidth 0.32
plot boxes index 0 using 1:4:3:7:6 with candlesticks whiskerbars 0.5 lc rgb "#1f77b4" fs solid 0.3 border title "other tokens", \
     boxes index 1 using 1:4:3:7:6 with candlesticks whiskerbars 0.5 lc rgb "#d62728" fs solid 0.3 border title "sink tokens", \
     boxes index 0 using 1:5 with points pt 7 ps 0.6 lc rgb "#1f77b4" notitle, \
     boxes index 1 using 1:5 with points pt 5 ps 0.6 lc rgb "#d62728" notitle
set title "sink / other value norm"
set ylabel "ratio of mean value L1 norms"
set yrange [0:*]
set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead dt 2 lc rgb "#555555"
plot ratio using 1:2:3:4 with yerrorbars pt 7 ps 0.8 lc rgb "#2ca02c" title "mean, 95% interval", \
     1/0 with lines dt 2 lc rgb "#555555" title "equal norms"
unset arrow 1
set yrange [*:*]
set title title_scatter noenhanced
set xrange [*:*]
set xtics auto
set logscale x
set format x logformat
set xlabel "mean attention per row"
set ylabel "value L1 norm"
plot scatter using ($3 == 0 ? $1 : 1/0):2 with points pt 7 ps 0.5 lc rgb "#1f77b4" title "other tokens", \
     scatter using ($3 == 1 ? $1 : 1/0):2 with points pt 5 ps 1.0 lc rgb "#d62728" title "sink tokens"
unset multiplot
