"""Run reports: one self-contained HTML file per summary, its SVG charts, and the timelines they draw."""
