# retention.gp — which tokens each policy holds at every step (one cache unit).
# Data: one matrix file per policy, rows = step t, columns = token position i:
#   1 held, 0 evicted, -1 not yet produced (i > t, left blank).
# Variables: files (space-separated matrix files), series (policy labels), out, title, T (tokens).
load "scripts/common.gp"
n = words(files)
set multiplot layout 1,n title title noenhanced
set palette defined (0 "#f2f2f2", 1 "#08306b")
set cbrange [0:1]
unset colorbox
set xlabel "token position i"
set ylabel "step t (query row)"
unset grid
set size ratio -1
set xrange [-0.5:T-0.5]
set yrange [-0.5:T-0.5]
set tics out
set key off
do for [i=1:n] {
    set title word(series,i) noenhanced
    plot word(files,i) matrix using 1:2:($3 >= 0 ? $3 : NaN) with image pixels notitle
}
unset multiplot
