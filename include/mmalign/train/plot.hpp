// mmalign/train/plot.hpp — training curves as pictures people can read: Figure (panels, series,
// labelled axes with nice ticks, legend, final values annotated) written as SVG and PNG.
//
//   plot/ticks.hpp        nice_ticks: axis ticks at 1, 2 or 5 × 10^k
//   plot/bitmap_font.hpp  the 5×9 ASCII font the PNG text is drawn with
//   plot/canvas.hpp       an RGB raster with anti-aliased lines, saved through io/png_writer.hpp
//   plot/figure.hpp       Figure, Panel, Axis, Series; Figure::save(stem) writes stem.svg and stem.png
#pragma once

#include "mmalign/train/plot/bitmap_font.hpp"
#include "mmalign/train/plot/canvas.hpp"
#include "mmalign/train/plot/figure.hpp"
#include "mmalign/train/plot/ticks.hpp"
