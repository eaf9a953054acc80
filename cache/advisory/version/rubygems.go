package version

import (
	"errors"
	"regexp"
	"strings"
)

// RubyGems is Gem::Version's order. Segments split at dots and at
// digit/letter transitions, and a "-" reads as ".pre.". Trailing zero
// numbers before the first letter segment and at the end do not count. A
// letter segment (a prerelease) sorts before a number.
var RubyGems Order = order[[]gemSegment]{name: "RubyGems", parse: parseGem, cmp: compareGem}

var gemPattern = regexp.MustCompile(`^[0-9]+(\.[0-9a-zA-Z]+)*(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)

var gemSegmentPattern = regexp.MustCompile(`[0-9]+|[a-zA-Z]+`)

type gemSegment struct {
	num   bool
	value string
}

func parseGem(s string) ([]gemSegment, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errEmpty
	}
	if !gemPattern.MatchString(s) {
		return nil, errors.New("not a RubyGems version")
	}
	s = strings.ReplaceAll(s, "-", ".pre.")
	var segs []gemSegment
	for _, p := range gemSegmentPattern.FindAllString(s, -1) {
		if isDigit(p[0]) {
			p = strings.TrimLeft(p, "0")
			if p == "" {
				p = "0"
			}
			segs = append(segs, gemSegment{num: true, value: p})
		} else {
			segs = append(segs, gemSegment{value: p})
		}
	}
	// Canonical segments: drop trailing zeros from the numeric part and from
	// the part that starts at the first letter segment.
	split := len(segs)
	for i, sg := range segs {
		if !sg.num {
			split = i
			break
		}
	}
	numeric := trimGemZeros(segs[:split])
	rest := trimGemZeros(segs[split:])
	return append(append([]gemSegment(nil), numeric...), rest...), nil
}

func trimGemZeros(segs []gemSegment) []gemSegment {
	for len(segs) > 0 {
		last := segs[len(segs)-1]
		if !last.num || last.value != "0" {
			break
		}
		segs = segs[:len(segs)-1]
	}
	return segs
}

func compareGem(a, b []gemSegment) int {
	zero := gemSegment{num: true, value: "0"}
	for i := 0; i < max(len(a), len(b)); i++ {
		x, y := zero, zero
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		switch {
		case x == y:
			continue
		case !x.num && y.num:
			return -1
		case x.num && !y.num:
			return 1
		case x.num:
			return compareDigits(x.value, y.value)
		}
		return strings.Compare(x.value, y.value)
	}
	return 0
}
