# attention_heatmap.gp — one head's attention, rows = query t, columns = key i,
# log colour scale so that the sink column and the faint tail both show;
# values below 10^-4 are black.  Drawn as one image: no seams between cells.
# Data: a matrix file (0 above the diagonal: keys not yet produced, left blank).
# Variables: data, out, title, T (tokens), logformat.
load "scripts/common.gp"
set title title noenhanced
set xlabel "key position i"
set ylabel "query position t"
set cblabel "attention probability a_t(i)"
set logscale cb
set cbrange [1e-4:1]
set format cb logformat
set palette defined (0 "#000000", 0.25 "#3b0f70", 0.5 "#b73779", 0.75 "#fc8961", 1 "#fcfdbf")
unset grid
set size ratio -1
set xrange [-0.5:T-0.5]
set yrange [-0.5:T-0.5]
set tics out
plot data matrix using 1:2:($3 > 0 ? ($3 < 1e-4 ? 1e-4 : $3) : NaN) with image notitle
