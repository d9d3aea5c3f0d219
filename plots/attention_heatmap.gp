# attention_heatmap.gp — one head's attention, rows = query t, columns = key i,
# log colour scale so that the sink column and the faint tail both show.
# Data: a matrix file (0 above the diagonal: keys not yet produced, left blank).
# Variables: data, out, title, T (tokens).
if (!exists("height")) height = 900
load "scripts/common.gp"
set title title noenhanced
set xlabel "key position i"
set ylabel "query position t"
set cblabel "attention probability a_t(i)"
set logscale cb
set cbrange [1e-4:1]
set format cb "10^{%L}"
set palette rgb 34,35,36
unset grid
set size ratio -1
set xrange [-0.5:T-0.5]
set yrange [-0.5:T-0.5]
set tics out
plot data matrix using 1:2:($3 > 0 ? $3 : NaN) with image pixels notitle
