# retention.gp — which tokens each policy holds at every step (one cache unit),
# a grid of small square maps.
# Data: one file per panel, rectangles "i t_first t_last": the runs of steps
# in which token i is evicted (block 0, light grey) or held (block 1, dark);
# steps t < i (token not yet produced) stay white.  Each rectangle overlaps
# its neighbours by a hair so that no seam shows between them.  A map of more
# than 1024 tokens comes as a matrix of square cells of `cell` tokens instead,
# each the share of its entries held (grey 0 to dark 1; -1 white, not yet produced).
# Variables: files, titles (one double-quoted title per panel, "|" between its lines),
# cells (tokens per cell side, per panel: 1 for rectangles), cols, rows, T (longest
# sequence), out, title, title2.
load "scripts/common.gp"
n = words(files)
set multiplot title sprintf("%s\n%s", title, title2) noenhanced font basefont
unset grid
unset key
set tics out scale 0.4 font tinyfont
set palette defined (-1 "#ffffff", 0 "#dcdcdc", 1 "#08306b")   # the SVG images: the same three colours
set palette maxcolors 3
set cbrange [-1:1]
unset colorbox
set xtics offset 0, 0.4
set ytics offset 0.6, 0
set xrange [-0.5:T-0.5]
set yrange [-0.5:T-0.5]
top = 0.5 / hin             # the figure title
left = 0.34 / win           # tick labels of each map
gap = 0.1 / win
below = 0.2 / hin           # x tick labels
above = 0.46 / hin          # each map's title (up to three lines)
cw = (1.0 - left) / cols
ch = (1.0 - top) / rows
# neighbouring rectangles overlap by half a device pixel (in cells), so no seam shows
cell_px = (cw - gap) * win * (term eq "pngcairo" ? dpi : 144) / T
h = 0.5 / cell_px < 0.05 ? 0.05 : (0.5 / cell_px > 0.45 ? 0.45 : 0.5 / cell_px)
do for [p=1:n] {
    c = (p - 1) % cols
    r = (p - 1) / cols
    set lmargin at screen left + c * cw
    set rmargin at screen left + (c + 1) * cw - gap
    set tmargin at screen 1 - top - r * ch - above
    set bmargin at screen 1 - top - (r + 1) * ch + below
    set title lines(word(titles, p)) noenhanced offset 0, -0.3 font smallfont
    cell = word(cells, p) + 0
    if (cell > 1) {
        # a long map: the share held per cell, from the same grey to the same dark blue
        set palette defined (-1 "#ffffff", -0.001 "#ffffff", 0 "#dcdcdc", 1 "#08306b")
        set palette maxcolors 0
        plot word(files, p) matrix using (($1 + 0.5) * cell - 0.5):(($2 + 0.5) * cell - 0.5):3 with image notitle
        set palette defined (-1 "#ffffff", 0 "#dcdcdc", 1 "#08306b")
        set palette maxcolors 3
        continue
    }
    if (term eq "svg") {
        # SVG: the map as one embedded image (retention_N.matrix beside retention_N.dat): small at any T
        matrix = word(files, p)[1:strlen(word(files, p)) - 4].".matrix"
        plot matrix matrix using 1:2:3 with image notitle
        continue
    }
    plot word(files, p) index 0 using 1:2:($1 - 0.5 - h):($1 + 0.5 + h):($2 - 0.5 - h):($3 + 0.5 + h) \
             with boxxy fs solid 1.0 noborder lc rgb "#dcdcdc" notitle, \
         word(files, p) index 1 using 1:2:($1 - 0.5 - h):($1 + 0.5 + h):($2 - 0.5 - h):($3 + 0.5 + h) \
             with boxxy fs solid 1.0 noborder lc rgb "#08306b" notitle
}
unset multiplot
