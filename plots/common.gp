# common.gp — terminal and style shared by every kvtrace figure.
# Variables (gnuplot -e, written by kvtrace plot and kept in replot.sh):
#   out       output file
#   term      pngcairo, svg, pdfcairo or dumb
#   win, hin  figure size in inches; dpi: PNG pixels per inch; fontsize: points
#   keybelow, keycols: the key below the plot, in this many columns
#   series, colours, dashes, points: the series of the figure (space-separated,
#             labels double-quoted), each with its colour, dash type and point type
if (!exists("term")) term = "pngcairo"
if (!exists("win")) win = 7.0
if (!exists("hin")) hin = 3.5
if (!exists("dpi")) dpi = 150
if (!exists("fontsize")) fontsize = 9
if (term eq "pdfcairo") {
    eval sprintf('set terminal pdfcairo size %.3fin,%.3fin enhanced font "Sans,%g" fontscale 1 linewidth 1 rounded background "white"', win, hin, fontsize)
} else {
    if (term eq "svg") {
        # one SVG unit per point: fonts keep their size in points
        eval sprintf('set terminal svg size %d,%d dynamic enhanced font "Sans,%g" linewidth 1 rounded background "white"', int(win*72), int(hin*72), fontsize)
    } else {
        if (term eq "dumb") {
            dumbw = (win < 5 ? 100 : 160)
            eval sprintf('set terminal dumb size %d,%d aspect 2,1', dumbw, (hin/win*dumbw*0.5 < 30 ? 30 : int(hin/win*dumbw*0.5)))
        } else {
            eval sprintf('set terminal pngcairo size %d,%d enhanced font "Sans,%g" fontscale %g linewidth %g rounded background "white"', int(win*dpi), int(hin*dpi), fontsize, dpi/96.0, dpi/96.0)
        }
    }
}
set output out
basefont = sprintf(",%g", fontsize)
smallfont = sprintf(",%g", fontsize - 1)
tinyfont = sprintf(",%g", fontsize - 2)
narrow = (win < 5)
set grid lc rgb "#e0e0e0" lw 0.5
set border lw 1
set tics out nomirror scale 0.6
# Legends sit outside the data: right of the plot, or below it (keybelow, set by
# kvtrace for narrow figures and long labels) in keycols columns.
if (!exists("keybelow")) keybelow = narrow
if (!exists("keycols")) keycols = 2
if (keybelow) { set key outside bottom center horizontal maxcols keycols samplen 2.5 spacing 1 noenhanced } \
else { set key outside right top vertical samplen 2.5 spacing 1.05 noenhanced }
# The style of series i (kvtrace assigns distinct colour, dash and point per series).
colour(i) = word(colours, i)
dash(i) = word(dashes, i) + 0
point(i) = word(points, i) + 0
label(i) = word(series, i)
# "a|b|c" -> three lines (for titles kvtrace writes)
lines(s) = strstrt(s, "|") ? s[1:strstrt(s, "|") - 1]."\n".lines(s[strstrt(s, "|") + 1:]) : s
# 10^{-3} style tick labels for logarithmic axes (set by kvtrace, plain for the text terminal)
if (!exists("logformat")) logformat = (term eq "dumb") ? "10^%T" : "10^{%T}"
# A symmetric log axis for values that may be negative (ΔNLL): linear within ±c, logarithmic beyond.
symlog_c = 0.01
symlog(y) = sgn(y) * log10(1 + abs(y) / symlog_c)
symlog_inverse(y) = sgn(y) * symlog_c * (10**abs(y) - 1)
