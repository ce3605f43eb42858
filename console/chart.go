package console

import (
	"fmt"
	"html"
	"html/template"
	"strconv"
	"strings"
)

// Chart geometry, in SVG user units: one bar slot per minute.
const (
	chartSlot   = 10                        // width of a minute
	chartBar    = 8                         // width of its bar
	chartWidth  = chartSlot * SeriesMinutes // plot area
	chartHeight = 100                       // plot area
	chartTop    = 6                         // room above the plot for the scale
	chartBottom = 16                        // room below it for the time axis
	chartFull   = chartTop + chartHeight + chartBottom
)

// chart is one inline SVG bar chart of the last hour, laid out in Go.
type chart struct {
	ID     string // element id, for tests and links
	Title  string
	Total  uint64 // over the hour
	Max    uint64 // top of the scale
	Width  int
	Height int
	PlotH  int // bottom of the plot area
	Top    int // top of the plot area
	Mid    int // y of the half-scale line
	Legend []legend
	Bars   []bar
	// Marks are the bars as SVG elements, written by marks: 180 bars
	// through the template engine cost milliseconds, through a
	// strings.Builder microseconds.
	Marks template.HTML
}

type legend struct{ Class, Label string }

// bar is one minute: one or two stacked segments.
type bar struct {
	X     int
	Label string // tooltip
	Segs  []seg
}

type seg struct {
	Y, H  int
	Class string
}

// charts lays out the request, denial and error charts of t.
func charts(t *Traffic) []chart {
	if t == nil || len(t.Minutes) == 0 {
		return nil
	}
	requests := newChart("chart-requests", "Requests per minute", t,
		[]legend{{"inbound", "inbound"}, {"egress", "egress"}},
		func(m Minute) []uint64 { return []uint64{m.Inbound, m.Egress} })
	denials := newChart("chart-denials", "Denials per minute", t,
		[]legend{{"denied", "denied"}},
		func(m Minute) []uint64 { return []uint64{m.Denied} })
	errors := newChart("chart-errors", "Errors per minute", t,
		[]legend{{"error", "failed or 5xx"}},
		func(m Minute) []uint64 { return []uint64{m.Errors} })
	return []chart{requests, denials, errors}
}

func newChart(id, title string, t *Traffic, legends []legend, values func(Minute) []uint64) chart {
	c := chart{ID: id, Title: title, Width: chartWidth, Height: chartFull, Top: chartTop,
		PlotH: chartTop + chartHeight, Legend: legends}
	var peak uint64
	for _, m := range t.Minutes {
		var sum uint64
		for _, v := range values(m) {
			sum += v
		}
		c.Total += sum
		peak = max(peak, sum)
	}
	c.Max = niceCeil(peak)
	c.Mid = chartTop + chartHeight/2
	last := len(t.Minutes) - 1
	for i, m := range t.Minutes {
		b := bar{X: i*chartSlot + (chartSlot-chartBar)/2}
		vs := values(m)
		y := chartTop + chartHeight
		var parts string
		for k, v := range vs {
			if k > 0 {
				parts += ", "
			}
			parts += formatCount(v) + " " + legends[k].Label
			if v == 0 {
				continue
			}
			h := max(int(v*chartHeight/c.Max), 1)
			y -= h
			b.Segs = append(b.Segs, seg{Y: y, H: h, Class: legends[k].Class})
		}
		when := m.Start.Format("15:04") + " UTC"
		if i == last {
			when += " (so far)"
		}
		b.Label = when + ": " + parts
		c.Bars = append(c.Bars, b)
	}
	c.Marks = c.marks()
	return c
}

// marks writes the bars: one group per minute with its tooltip, its
// segments and a transparent full-height rectangle to hover. Only numbers
// and fixed class names go in unescaped; labels are escaped.
func (c *chart) marks() template.HTML {
	var b strings.Builder
	b.Grow(len(c.Bars) * 200)
	num := func(n int) { b.WriteString(strconv.Itoa(n)) }
	for _, bar := range c.Bars {
		b.WriteString("<g><title>")
		b.WriteString(html.EscapeString(bar.Label))
		b.WriteString("</title>")
		for _, s := range bar.Segs {
			b.WriteString(`<rect class="`)
			b.WriteString(html.EscapeString(s.Class))
			b.WriteString(`" x="`)
			num(bar.X)
			b.WriteString(`" y="`)
			num(s.Y)
			b.WriteString(`" width="`)
			num(chartBar)
			b.WriteString(`" height="`)
			num(s.H)
			b.WriteString(`"></rect>`)
		}
		b.WriteString(`<rect class="hover" x="`)
		num(bar.X)
		b.WriteString(`" y="`)
		num(c.Top)
		b.WriteString(`" width="`)
		num(chartBar)
		b.WriteString(`" height="`)
		num(chartHeight)
		b.WriteString("\"></rect></g>\n")
	}
	return template.HTML(b.String())
}

// niceCeil rounds n up to 1, 2 or 5 times a power of ten (at least 1), so
// the scale reads easily.
func niceCeil(n uint64) uint64 {
	if n <= 1 {
		return 1
	}
	for p := uint64(1); ; p *= 10 {
		for _, m := range []uint64{1, 2, 5} {
			if m*p >= n {
				return m * p
			}
		}
	}
}

// formatCount writes n with thousands separators: 12,345.
func formatCount(n uint64) string {
	s := strconv.FormatUint(n, 10)
	if len(s) <= 3 {
		return s
	}
	out := make([]byte, 0, len(s)+len(s)/3)
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// perMinute renders a rate for a scale label.
func perMinute(n uint64) string { return fmt.Sprintf("%s/min", formatCount(n)) }
