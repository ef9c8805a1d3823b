package webui

import (
	"hash/fnv"
	"html"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"github.com/valethq/valet"
)

// initials returns up to two letters for an avatar: "Ada Lovelace" -> "AL".
func initials(name string) string {
	var out []rune
	for _, f := range strings.Fields(name) {
		for _, r := range f {
			if unicode.IsLetter(r) || unicode.IsDigit(r) {
				out = append(out, unicode.ToUpper(r))
				break
			}
		}
		if len(out) == 2 {
			break
		}
	}
	if len(out) == 0 {
		return "?"
	}
	return string(out)
}

// avatarClass picks one of eight avatar colours from a name, so a person
// keeps the same colour everywhere without inline styles (which the CSP
// forbids).
func avatarClass(name string) string {
	h := fnv.New32a()
	h.Write([]byte(strings.ToLower(name)))
	return "av" + strconv.Itoa(int(h.Sum32()%8))
}

// scopeText is the catalog's plain wording of a scope.
func scopeText(s valet.Scope) string {
	if info, ok := valet.LookupScope(s); ok {
		return info.Consent
	}
	return string(s)
}

// bodyText is what the conversation shows of a message: its text body, or
// the text of its HTML body. HTML from customers is never rendered as HTML;
// the result is escaped by html/template like any other text.
func bodyText(m valet.Message) string {
	if strings.TrimSpace(m.BodyText) != "" {
		return strings.TrimSpace(m.BodyText)
	}
	return htmlToText(m.BodyHTML)
}

var (
	dropBlocks = regexp.MustCompile(`(?is)<(script|style|head|title)\b.*?</(script|style|head|title)\s*>`)
	lineBreaks = regexp.MustCompile(`(?i)<br\s*/?>|</(div|li|tr)\s*>`)
	paraBreaks = regexp.MustCompile(`(?i)</(p|h[1-6]|blockquote|pre|ul|ol|table)\s*>`)
	listItems  = regexp.MustCompile(`(?i)<li\b[^>]*>`)
	anyTag     = regexp.MustCompile(`(?s)<[^>]*>`)
	blankRuns  = regexp.MustCompile(`\n{3,}`)
	spaceRuns  = regexp.MustCompile(`[ \t]+`)
)

// htmlToText turns an HTML body into readable plain text: block ends become
// line breaks, tags go, entities are decoded. It is for display only.
func htmlToText(s string) string {
	s = dropBlocks.ReplaceAllString(s, "")
	s = listItems.ReplaceAllString(s, "• ")
	s = paraBreaks.ReplaceAllString(s, "\n\n")
	s = lineBreaks.ReplaceAllString(s, "\n")
	s = anyTag.ReplaceAllString(s, "")
	s = html.UnescapeString(s)
	s = spaceRuns.ReplaceAllString(s, " ")
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	s = blankRuns.ReplaceAllString(strings.Join(lines, "\n"), "\n\n")
	return strings.TrimSpace(s)
}
