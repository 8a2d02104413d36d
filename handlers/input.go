package handlers

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/savesync/savesync/save"
)

// Text that Firestore cannot store never reaches the store: Firestore keeps
// strings as UTF-8, and a string that is not valid UTF-8 fails inside the
// client's protobuf marshalling as an internal error that the client
// retries until the caller gives up. So every string a request carries is
// checked where it enters, and refused with 400 INVALID_ARGUMENT naming
// the field (details.field, and details.in: header, path, query or body):
//
//   - path segments, query names and values and the headers the API reads
//     must be valid UTF-8 without NUL characters: they are identifiers, and
//     several become document ids or query values;
//   - JSON bodies must be valid UTF-8 in every string and object key, with
//     no lone UTF-16 surrogate escape ("\ud800" has no UTF-8 form, and
//     encoding/json would silently turn it into U+FFFD), and no NUL in an
//     object key, since keys become Firestore field names. NUL inside a
//     string value is stored as it is.

// checkedHeaders are the request headers the API reads.
var checkedHeaders = []string{
	"Authorization",
	headerIdempotencyKey,
	headerJobID,
	headerSchemaVersion,
	HeaderRobloxSignature,
	"Last-Event-ID",
}

// Where a refused string was found, as details.in names it.
const (
	inHeader = "header"
	inPath   = "path"
	inQuery  = "query"
	inBody   = "body"
)

// RefuseInvalidText answers 400 INVALID_ARGUMENT before any later handler
// runs when the request's path, a query name or value, or a header the API
// reads is not valid UTF-8 or holds a NUL character, so routes that read
// c.Param, c.Query or c.GetHeader see only text Firestore can store. JSON
// bodies are checked where they are read. Put it before the routes'
// authentication.
func RefuseInvalidText() gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := checkRequestText(c); err != nil {
			writeError(c, err)
			return
		}
		c.Next()
	}
}

// checkRequestText checks the path, the query and the headers the API reads.
func checkRequestText(c *gin.Context) error {
	for _, p := range c.Params {
		if problem := identifierProblem(p.Value); problem != "" {
			return textError(inPath, p.Key, "path parameter "+p.Key, problem)
		}
	}
	if problem := identifierProblem(c.Request.URL.Path); problem != "" {
		return textError(inPath, "path", "the path", problem)
	}
	query, err := url.ParseQuery(c.Request.URL.RawQuery)
	if err != nil {
		return save.Errorf(save.CodeInvalidArgument, "the query string is malformed (%v): percent-encode names and values", err).
			WithDetail("in", inQuery)
	}
	for name, values := range query {
		if problem := identifierProblem(name); problem != "" {
			return textError(inQuery, strconv.QuoteToASCII(name), "a query parameter name", problem)
		}
		for _, v := range values {
			if problem := identifierProblem(v); problem != "" {
				return textError(inQuery, name, "query parameter "+name, problem)
			}
		}
	}
	for _, h := range checkedHeaders {
		for _, v := range c.Request.Header.Values(h) {
			if problem := identifierProblem(v); problem != "" {
				return textError(inHeader, h, "the "+h+" header", problem)
			}
		}
	}
	return nil
}

// identifierProblem says what is wrong with a path segment, query string
// or header value, or "" when nothing is.
func identifierProblem(s string) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8: send text as UTF-8, percent-encoded in URLs"
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "contains a NUL character"
	}
	return ""
}

// textError is the INVALID_ARGUMENT for a refused string.
func textError(in, field, what, problem string) error {
	return save.Errorf(save.CodeInvalidArgument, "%s %s", what, problem).
		WithDetail("field", field).
		WithDetail("in", in)
}

// checkBodyText checks every string and object key of a JSON body (see the
// rules above). A body that is not JSON passes, for the decoder to explain.
// prefix names the body's place in a larger document ("" for a whole
// request body), so a batch item's fields are named within the batch.
func checkBodyText(body []byte, prefix string) error {
	if !json.Valid(body) {
		return nil
	}
	s := textScanner{b: body}
	if prefix != "" {
		s.path = append(s.path, pathSegment{key: prefix, root: true})
	}
	s.skipSpace()
	return s.value()
}

// pathSegment is one step of the path to a JSON value: an object key, an
// array index, or (root) a prefix given by the caller.
type pathSegment struct {
	key   string
	index int
	array bool
	root  bool
}

// textScanner walks a syntactically valid JSON document and stops at the
// first string Firestore cannot store. It is not a validator: json.Valid
// has already accepted the document.
type textScanner struct {
	b    []byte
	i    int
	path []pathSegment
}

// value checks the value at s.i and moves past it.
func (s *textScanner) value() error {
	switch s.b[s.i] {
	case '{':
		s.i++
		s.skipSpace()
		if s.b[s.i] == '}' {
			s.i++
			return nil
		}
		for {
			key, problem := s.str()
			if problem == "" && strings.IndexByte(key, 0) >= 0 {
				problem = "contains a NUL character"
			}
			if problem != "" {
				return s.fail("an object key in ", problem)
			}
			s.skipSpace()
			s.i++ // ':'
			s.skipSpace()
			s.path = append(s.path, pathSegment{key: key})
			if err := s.value(); err != nil {
				return err
			}
			s.path = s.path[:len(s.path)-1]
			s.skipSpace()
			if s.b[s.i] == '}' {
				s.i++
				return nil
			}
			s.i++ // ','
			s.skipSpace()
		}
	case '[':
		s.i++
		s.skipSpace()
		if s.b[s.i] == ']' {
			s.i++
			return nil
		}
		for n := 0; ; n++ {
			s.path = append(s.path, pathSegment{index: n, array: true})
			if err := s.value(); err != nil {
				return err
			}
			s.path = s.path[:len(s.path)-1]
			s.skipSpace()
			if s.b[s.i] == ']' {
				s.i++
				return nil
			}
			s.i++ // ','
			s.skipSpace()
		}
	case '"':
		if _, problem := s.str(); problem != "" {
			return s.fail("", problem)
		}
		return nil
	default:
		// A number, true, false or null: skip to the next delimiter.
		for s.i < len(s.b) && strings.IndexByte(",]} \t\r\n", s.b[s.i]) < 0 {
			s.i++
		}
		return nil
	}
}

// str reads the string at s.i and answers its value and what is wrong
// with it, if anything.
func (s *textScanner) str() (string, string) {
	s.i++ // opening quote
	var out []byte
	for {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return string(out), ""
		case c == '\\':
			s.i++
			e := s.b[s.i]
			if e != 'u' {
				out = append(out, unescape(e))
				s.i++
				continue
			}
			r := hex4(s.b[s.i+1 : s.i+5])
			s.i += 5
			if utf16.IsSurrogate(r) {
				var low rune = -1
				if s.i+6 <= len(s.b) && s.b[s.i] == '\\' && s.b[s.i+1] == 'u' {
					low = hex4(s.b[s.i+2 : s.i+6])
				}
				pair := utf16.DecodeRune(r, low)
				if pair == utf8.RuneError {
					return "", `has a lone UTF-16 surrogate escape (\u` + strconv.FormatInt(int64(r), 16) +
						`): escape a character outside the Basic Multilingual Plane as a surrogate pair, or send it as UTF-8`
				}
				s.i += 6
				r = pair
			}
			out = utf8.AppendRune(out, r)
		case c < utf8.RuneSelf:
			out = append(out, c)
			s.i++
		default:
			r, size := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && size <= 1 {
				return "", "is not valid UTF-8: send text as UTF-8"
			}
			out = append(out, s.b[s.i:s.i+size]...)
			s.i += size
		}
	}
}

// skipSpace moves past JSON white space.
func (s *textScanner) skipSpace() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

// fail is the INVALID_ARGUMENT for a string at the current path.
func (s *textScanner) fail(what, problem string) error {
	field := s.field()
	if field == "" {
		return textError(inBody, "", what+"the request body", problem)
	}
	return textError(inBody, field, what+field, problem)
}

// field renders the current path the way the domain's messages name
// fields: ops[0].element, mutations[2].mutation.reason.
func (s *textScanner) field() string {
	var b strings.Builder
	for _, seg := range s.path {
		switch {
		case seg.root:
			b.WriteString(seg.key)
		case seg.array:
			b.WriteString("[" + strconv.Itoa(seg.index) + "]")
		default:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(seg.key)
		}
	}
	return b.String()
}

// unescape answers the byte a one-character JSON escape stands for.
func unescape(e byte) byte {
	switch e {
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	default: // '"', '\\', '/'
		return e
	}
}

// hex4 decodes the four hex digits of a \u escape (json.Valid checked them).
func hex4(h []byte) rune {
	n, _ := strconv.ParseUint(string(h), 16, 32)
	return rune(n)
}
