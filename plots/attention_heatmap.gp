# attention_heatmap.gp — one head's attention, rows = query t, columns = key i,
# log colour scale so that the sink column and the faint tail both show;
# values below 10^decade (10^-4, less on sequences of more than 1000 tokens,
# where a uniform row is below it) are black.  Drawn as one image: no seams.
# Data: a matrix file (0 above the diagonal: keys not yet produced, left blank),
# one value per token, or per square cell of `cell` tokens (their mean) on a long sequence.
# Variables: data, out, title, T (tokens), cell (tokens per cell side), decade, cblabel, logformat.
load "scripts/common.gp"
floor = 10.0**decade
set title title noenhanced
set xlabel "key position i"
set ylabel "query position t"
set cblabel cblabel
set logscale cb
set cbrange [floor:1]
set format cb logformat
set palette defined (0 "#000000", 0.25 "#3b0f70", 0.5 "#b73779", 0.75 "#fc8961", 1 "#fcfdbf")
unset grid
set size ratio -1
set xrange [-0.5:T-0.5]
set yrange [-0.5:T-0.5]
set tics out
plot data matrix using (($1 + 0.5) * cell - 0.5):(($2 + 0.5) * cell - 0.5):($3 > 0 ? ($3 < floor ? floor : $3) : NaN) \
     with image notitle
