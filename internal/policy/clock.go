package policy

import (
	"fmt"
	"strings"
	"time"

	// Time zones by name must work in a scratch or distroless image,
	// which has no /usr/share/zoneinfo: embed the database (about 450 kB).
	_ "time/tzdata"
)

// clockMatcher is a date, day_of_week or time_of_day criterion.
type clockMatcher struct {
	kind kind
	loc  *time.Location

	// date: the request must be at or after after and before before.
	after, before       time.Time
	hasAfter, hasBefore bool

	// day_of_week: bit 1<<time.Weekday for each day that matches.
	days uint8

	// time_of_day: the wall-clock time in loc, from midnight, must be at
	// or after from and before to; when from is later than to the window
	// spans midnight (22:00 to 06:00).
	from, to       time.Duration
	hasFrom, hasTo bool
}

func (m *clockMatcher) match(now time.Time) bool {
	switch m.kind {
	case kDate:
		return (!m.hasAfter || !now.Before(m.after)) && (!m.hasBefore || now.Before(m.before))
	case kDayOfWeek:
		return m.days&(1<<now.In(m.loc).Weekday()) != 0
	case kTimeOfDay:
		// One Clock call: each of Hour, Minute and Second would look the
		// zone up again.
		h, mi, sec := now.In(m.loc).Clock()
		tod := time.Duration(h)*time.Hour + time.Duration(mi)*time.Minute +
			time.Duration(sec)*time.Second + time.Duration(now.Nanosecond())
		switch {
		case m.hasFrom && m.hasTo && m.from > m.to:
			return tod >= m.from || tod < m.to
		default:
			return (!m.hasFrom || tod >= m.from) && (!m.hasTo || tod < m.to)
		}
	}
	return false
}

// dateLayouts are the ISO 8601 forms a date accepts; those without an
// offset are in the matcher's timezone (UTC unless given).
var dateLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02T15:04",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02",
}

func parseDate(s string, loc *time.Location) (time.Time, bool) {
	s = strings.TrimSpace(s)
	for _, layout := range dateLayouts {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// timeOfDayLayouts are the forms Pomerium documents for time_of_day.
var timeOfDayLayouts = []string{
	"3:04 PM", "3:04PM", "3 PM", "3PM",
	"15:04:05.999999999", "15:04:05", "15:04",
}

// parseTimeOfDay returns s as a duration since midnight.
func parseTimeOfDay(s string) (time.Duration, bool) {
	s = strings.ToUpper(strings.TrimSpace(s))
	for _, layout := range timeOfDayLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute +
				time.Duration(t.Second())*time.Second + time.Duration(t.Nanosecond()), true
		}
	}
	return 0, false
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "sunday": time.Sunday,
	"mon": time.Monday, "monday": time.Monday,
	"tue": time.Tuesday, "tuesday": time.Tuesday,
	"wed": time.Wednesday, "wednesday": time.Wednesday,
	"thu": time.Thursday, "thursday": time.Thursday,
	"fri": time.Friday, "friday": time.Friday,
	"sat": time.Saturday, "saturday": time.Saturday,
}

// parseDays parses a day_of_week value: "*", or days and ranges of days
// separated by commas ("mon,wed,fri", "mon-fri", "sat-sun,wed"), by
// English name or three-letter abbreviation in any case. A range wraps
// round the week: "fri-mon" is Friday to Monday.
func parseDays(s string) (uint8, error) {
	if strings.TrimSpace(s) == "*" {
		return 0x7f, nil
	}
	day := func(name string) (time.Weekday, error) {
		d, ok := dayNames[strings.ToLower(strings.TrimSpace(name))]
		if !ok {
			return 0, fmt.Errorf("unknown day %q: want mon, tue, wed, thu, fri, sat, sun or their full names", strings.TrimSpace(name))
		}
		return d, nil
	}
	var days uint8
	for item := range strings.SplitSeq(s, ",") {
		from, to, isRange := strings.Cut(item, "-")
		a, err := day(from)
		if err != nil {
			return 0, err
		}
		b := a
		if isRange {
			if b, err = day(to); err != nil {
				return 0, err
			}
		}
		for d := a; ; d = (d + 1) % 7 {
			days |= 1 << d
			if d == b {
				break
			}
		}
	}
	return days, nil
}
