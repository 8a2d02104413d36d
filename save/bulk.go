package save

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Kinds of bulk selections: which players a bulk job changes.
const (
	// SelectAll is every player with a save.
	SelectAll = "all"
	// SelectIDs is an explicit list of user ids (typed or uploaded).
	SelectIDs = "ids"
	// SelectSave is the players whose save matches a condition on one
	// balance, e.g. currencies.coins > 1000000000.
	SelectSave = "save"
	// SelectLedger is the players whose ledger holds an entry with an op
	// (item.grant goldenHammer), optionally from one actor and in a time
	// range.
	SelectLedger = "ledger"
)

// MaxBulkIDs bounds an explicit id list, so the job's definition stays
// well inside one Firestore document.
const MaxBulkIDs = 20000

// BulkSelection says which players a bulk job changes. Kind decides which
// of the other fields apply.
type BulkSelection struct {
	Kind string `json:"kind"`
	// UserIDs are the players of SelectIDs, in the order given.
	UserIDs []int64 `json:"userIds,omitempty"`
	// Field, Cmp and Value are SelectSave's condition: a balance path
	// (currencies.X, stats.X or items.X), a comparison (>, >=, <, <=, ==)
	// and an integer.
	Field string `json:"field,omitempty"`
	Cmp   string `json:"cmp,omitempty"`
	Value int64  `json:"value,omitempty"`
	// Op and Target are SelectLedger's condition: an op kind and, for ops
	// with one, the currency, stat or item it names.
	Op     string `json:"op,omitempty"`
	Target string `json:"target,omitempty"`
	// ActorKind and ActorID narrow SelectLedger to entries of one actor
	// (ActorID needs ActorKind).
	ActorKind ActorKind `json:"actorKind,omitempty"`
	ActorID   string    `json:"actorId,omitempty"`
	// From (inclusive) and To (exclusive) bound the entries' commit time;
	// a zero To is the job's creation time, so the job never selects by
	// its own entries.
	From time.Time `json:"from,omitzero"`
	To   time.Time `json:"to,omitzero"`
}

// CheckBulkSelection validates a selection against the config.
// Errors: INVALID_ARGUMENT naming the field under "selection".
func (c *Config) CheckBulkSelection(s BulkSelection) error {
	switch s.Kind {
	case SelectAll:
		return nil
	case SelectIDs:
		if len(s.UserIDs) == 0 {
			return invalidf("selection.userIds", "required: at least one user id")
		}
		if len(s.UserIDs) > MaxBulkIDs {
			return fieldError(CodeLimitExceeded, "selection.userIds", "%d ids, more than the limit of %d per job: split the list", len(s.UserIDs), MaxBulkIDs).WithDetail("limit", MaxBulkIDs)
		}
		seen := make(map[int64]bool, len(s.UserIDs))
		for i, id := range s.UserIDs {
			if id <= 0 {
				return invalidf(indexPath("selection.userIds", i), "must be a positive Roblox user id, got %d", id)
			}
			if seen[id] {
				return invalidf(indexPath("selection.userIds", i), "user id %d is listed twice", id)
			}
			seen[id] = true
		}
		return nil
	case SelectSave:
		if _, err := c.balancePath(s.Field, "selection.field"); err != nil {
			return err
		}
		switch s.Cmp {
		case ">", ">=", "<", "<=", "==":
		default:
			return invalidf("selection.cmp", "must be one of >, >=, <, <=, ==, got %q", s.Cmp)
		}
		return nil
	case SelectLedger:
		if StrategyOf(s.Op) == "" {
			return invalidf("selection.op", "must be an op kind such as item.grant, got %q", s.Op)
		}
		if s.Target != "" && targetOf(map[string]any{"op": s.Op, "currency": s.Target, "item": s.Target, "stat": s.Target}) == "" {
			return invalidf("selection.target", "%s names no currency, stat or item; leave target empty", s.Op)
		}
		switch s.ActorKind {
		case "", ActorServer, ActorCompanion, ActorAdmin, ActorSystem:
		default:
			return invalidf("selection.actorKind", "must be server, companion, admin or system, got %q", s.ActorKind)
		}
		if s.ActorID != "" && s.ActorKind == "" {
			return invalidf("selection.actorKind", "required with actorId: the kind of the actor")
		}
		for _, t := range []struct {
			name string
			at   time.Time
		}{{"from", s.From}, {"to", s.To}} {
			if !t.at.IsZero() && (t.at.Year() < 1 || t.at.Year() > 9999) {
				return invalidf("selection."+t.name, "must be a time between the years 1 and 9999")
			}
		}
		if !s.From.IsZero() && !s.To.IsZero() && !s.From.Before(s.To) {
			return invalidf("selection.from", "must be before to")
		}
		return nil
	case "":
		return invalidf("selection.kind", "required: all, ids, save or ledger")
	}
	return invalidf("selection.kind", "must be all, ids, save or ledger, got %q", s.Kind)
}

// balancePath checks a balance path (currencies.X, stats.X, items.X) and
// returns its two parts.
func (c *Config) balancePath(path, field string) ([2]string, error) {
	group, id, ok := strings.Cut(path, ".")
	var known bool
	switch group {
	case keyCurrencies:
		_, known = c.Currencies[id]
	case keyStats:
		_, known = c.Stats[id]
	case keyItems:
		_, known = c.Items[id]
	}
	if !ok || !known {
		return [2]string{}, invalidf(field, "must be currencies.<id>, stats.<id> or items.<id> of the game config, got %q", path)
	}
	return [2]string{group, id}, nil
}

// LedgerAmount reports whether a stored ledger op (the entry's ops as a
// JSON-like tree) matches the selection's op and target, and the amount
// or count it carried: what "granted" adds up.
func (s BulkSelection) LedgerAmount(op any) (int64, bool) {
	m, ok := op.(map[string]any)
	if !ok || m["op"] != s.Op {
		return 0, false
	}
	if s.Target != "" && targetOf(m) != s.Target {
		return 0, false
	}
	for _, k := range []string{"amount", "count"} {
		switch v := m[k].(type) {
		case int64:
			return v, true
		case float64:
			return int64(v), true
		case json.Number:
			n, _ := v.Int64()
			return n, true
		}
	}
	return 0, true
}

// targetOf is the currency, stat or item an op (as a tree) names.
func targetOf(m map[string]any) string {
	switch m["op"] {
	case OpCurrencyAdd:
		s, _ := m["currency"].(string)
		return s
	case OpStatAdd:
		s, _ := m["stat"].(string)
		return s
	case OpXPAdd:
		return XPStat
	case OpItemGrant, OpItemConsume:
		s, _ := m["item"].(string)
		return s
	}
	return ""
}

// BulkOp is one op of a bulk job: an op as a mutation carries it, whose
// amount (currency.add, stat.add, xp.add) or count (item.grant,
// item.consume) may be an expression evaluated per player.
type BulkOp struct {
	Op Op `json:"-"`
	// Expr is the amount's or count's expression; nil when it is literal.
	Expr *Expr `json:"-"`
}

// DecodeBulkOps decodes a bulk job's ops: a JSON array of ops as in a
// mutation, where the amount or count may be a string holding an
// expression (see ParseExpr). Only delta, collection and settings ops are
// allowed: versioned ops would need each player's version and a purchase
// is the player's own. Every op is checked as an admin's would be, with
// 1 standing in for an expression.
// Errors: INVALID_ARGUMENT naming the field under "ops",
// PERMISSION_DENIED for an op a bulk job may not use.
func (c *Config) DecodeBulkOps(data []byte) ([]BulkOp, error) {
	tree, err := decodeStrictJSON(data)
	if err != nil {
		return nil, prefixField(err, "ops")
	}
	list, ok := tree.([]any)
	if !ok {
		return nil, invalidf("ops", "must be an array of ops")
	}
	if len(list) == 0 {
		return nil, invalidf("ops", "required: at least one op")
	}
	out := make([]BulkOp, 0, len(list))
	for i, v := range list {
		path := indexPath("ops", i)
		m, ok := v.(map[string]any)
		if !ok {
			return nil, invalidf(path, "must be an op object")
		}
		kind, _ := m["op"].(string)
		switch StrategyOf(kind) {
		case StrategyDelta, StrategyORSet, StrategyLastWriterWins:
		case "":
			return nil, invalidf(path+".op", "unknown op %q", kind)
		default:
			return nil, fieldError(CodePermissionDenied, path+".op", "%s is not allowed in a bulk job: use delta, collection or settings ops", kind).WithDetail("op", kind)
		}
		var b BulkOp
		for _, k := range []string{"amount", "count"} {
			text, isExpr := m[k].(string)
			if !isExpr {
				continue
			}
			e, err := ParseExpr(text)
			if err != nil {
				return nil, prefixField(err, path+"."+k)
			}
			b.Expr = e
			m[k] = json.Number("1")
		}
		raw, err := json.Marshal(map[string]any{"ops": []any{m}})
		if err != nil {
			return nil, invalidf(path, "cannot be encoded: %v", err)
		}
		mut, err := DecodeMutation(raw)
		if err != nil {
			return nil, renameOpsField(err, path)
		}
		if err := c.CheckMutation(mut, ActorAdmin); err != nil {
			return nil, renameOpsField(err, path)
		}
		b.Op = mut.Ops[0]
		out = append(out, b)
	}
	return out, nil
}

// renameOpsField moves an error about "ops[0]" of a one-op mutation to the
// op's place in the job's list.
func renameOpsField(err error, path string) error {
	e, ok := AsError(err)
	if !ok {
		return err
	}
	out := &Error{Code: e.Code, Message: strings.Replace(e.Message, "ops[0]", path, 1), Details: e.Details}
	if f, ok := e.Details["field"].(string); ok {
		out.Details["field"] = strings.Replace(f, "ops[0]", path, 1)
	}
	return out
}

// UsesHeld reports whether any op's expression reads the player's balance,
// so the ops computed from a read must apply to that same version.
func UsesHeld(ops []BulkOp) bool {
	for _, b := range ops {
		if b.Expr != nil && b.Expr.uses("held") {
			return true
		}
	}
	return false
}

// UsesGranted reports whether any op's expression reads what the
// player's selected ledger entries carried.
func UsesGranted(ops []BulkOp) bool {
	for _, b := range ops {
		if b.Expr != nil && b.Expr.uses("granted") {
			return true
		}
	}
	return false
}

// PlanBulkOps turns a job's ops into one player's: each expression is
// evaluated with held (the balance the op names, in st) and granted (the
// sum over the player's selected ledger ops). An op whose amount comes to
// 0, or whose count comes to 0 or less, is left out: nothing to do. The
// ops are not checked against floors and caps here; the mutation is.
// Errors: LIMIT_EXCEEDED when an expression overflows int64.
func (c *Config) PlanBulkOps(ops []BulkOp, st State, granted int64) ([]Op, error) {
	out := make([]Op, 0, len(ops))
	for i, b := range ops {
		op := b.Op
		if b.Expr == nil {
			out = append(out, op)
			continue
		}
		n, err := b.Expr.Eval(map[string]int64{"held": c.held(st, op), "granted": granted})
		if err != nil {
			return nil, prefixField(err, indexPath("ops", i))
		}
		switch op.Kind {
		case OpItemGrant, OpItemConsume:
			if n <= 0 {
				continue
			}
			op.Count = n
		default:
			if n == 0 {
				continue
			}
			op.Amount = n
		}
		out = append(out, op)
	}
	return out, nil
}

// held is the balance an op names in st: the currency, stat or item count.
func (c *Config) held(st State, op Op) int64 {
	switch op.Kind {
	case OpCurrencyAdd:
		if v, ok := st.Currencies[op.Currency]; ok {
			return v
		}
		return c.Currencies[op.Currency].Start
	case OpStatAdd, OpXPAdd:
		id := op.Stat
		if op.Kind == OpXPAdd {
			id = XPStat
		}
		if v, ok := st.Stats[id]; ok {
			return v
		}
		return c.Stats[id].Start
	case OpItemGrant, OpItemConsume:
		return st.Items[op.Item]
	}
	return 0
}

// Balance is the value of a balance path (currencies.X, stats.X, items.X)
// in st, for a save condition checked in memory.
func (c *Config) Balance(st State, path string) int64 {
	group, id, _ := strings.Cut(path, ".")
	switch group {
	case keyCurrencies:
		return c.held(st, Op{Kind: OpCurrencyAdd, Currency: id})
	case keyStats:
		return c.held(st, Op{Kind: OpStatAdd, Stat: id})
	case keyItems:
		return st.Items[id]
	}
	return 0
}

// Effect adds up the integer changes by path: the total a set of
// mutations added to each currency, stat and item.
func Effect(total map[string]int64, changes []Change) {
	for _, ch := range changes {
		n, okNew := asInt64(ch.New)
		o, okOld := asInt64(ch.Old)
		if !okNew && !okOld {
			continue
		}
		total[ch.Path] += n - o
	}
}

// asInt64 reads an integer change value (absent is 0).
func asInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case float64:
		if n == math.Trunc(n) {
			return int64(n), true
		}
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	case nil:
		return 0, false
	}
	return 0, false
}

// Expr is a small integer expression for a bulk op's amount or count:
// integers, the names held and granted, unary minus, + - *, parentheses,
// and min(a, b) and max(a, b). For example "-min(granted, held)" takes
// back what the selected entries granted, as far as the player still
// holds it. Arithmetic is int64 and overflow is an error, never a wrap.
type Expr struct {
	text string
	root *exprNode
}

// exprNode is one node of a parsed expression.
type exprNode struct {
	kind        byte // 'n' number, 'v' name, '-' negate, '+', 's' subtract, '*', 'm' min, 'M' max
	num         int64
	name        string
	left, right *exprNode
}

// maxExprLength bounds an expression's text.
const maxExprLength = 200

// ParseExpr parses an amount expression (see Expr).
// Errors: INVALID_ARGUMENT saying what is wrong and where.
func ParseExpr(text string) (*Expr, error) {
	if len(text) > maxExprLength {
		return nil, Errorf(CodeInvalidArgument, "expression longer than %d characters", maxExprLength)
	}
	p := exprParser{src: text}
	p.next()
	n, err := p.sum()
	if err != nil {
		return nil, err
	}
	if p.tok != "" {
		return nil, p.errorf("unexpected %q", p.tok)
	}
	return &Expr{text: text, root: n}, nil
}

// String returns the expression as written.
func (e *Expr) String() string { return e.text }

// MarshalJSON writes the expression as its text.
func (e *Expr) MarshalJSON() ([]byte, error) { return json.Marshal(e.text) }

// Eval evaluates the expression with the given names.
// Errors: LIMIT_EXCEEDED on overflow.
func (e *Expr) Eval(vars map[string]int64) (int64, error) { return e.root.eval(vars) }

func (e *Expr) uses(name string) bool { return e.root.uses(name) }

func (n *exprNode) uses(name string) bool {
	if n == nil {
		return false
	}
	return (n.kind == 'v' && n.name == name) || n.left.uses(name) || n.right.uses(name)
}

func (n *exprNode) eval(vars map[string]int64) (int64, error) {
	switch n.kind {
	case 'n':
		return n.num, nil
	case 'v':
		return vars[n.name], nil
	}
	l, err := n.left.eval(vars)
	if err != nil {
		return 0, err
	}
	if n.kind == '-' {
		if l == math.MinInt64 {
			return 0, overflow()
		}
		return -l, nil
	}
	r, err := n.right.eval(vars)
	if err != nil {
		return 0, err
	}
	switch n.kind {
	case '+':
		s, over := addInt64(l, r)
		if over {
			return 0, overflow()
		}
		return s, nil
	case 's':
		if r == math.MinInt64 {
			return 0, overflow()
		}
		s, over := addInt64(l, -r)
		if over {
			return 0, overflow()
		}
		return s, nil
	case '*':
		if l != 0 && r != 0 {
			p := l * r
			if p/r != l || (l == -1 && r == math.MinInt64) || (r == -1 && l == math.MinInt64) {
				return 0, overflow()
			}
			return p, nil
		}
		return 0, nil
	case 'm':
		return min(l, r), nil
	default:
		return max(l, r), nil
	}
}

func overflow() error {
	return Errorf(CodeLimitExceeded, "the amount expression overflows a 64-bit integer for this player")
}

// exprParser is a recursive-descent parser over the expression's tokens.
type exprParser struct {
	src string
	pos int
	tok string
	at  int
}

func (p *exprParser) errorf(format string, args ...any) error {
	return Errorf(CodeInvalidArgument, "expression %q at %d: %s (allowed: integers, held, granted, + - *, parentheses, min(a, b), max(a, b))", p.src, p.at, fmt.Sprintf(format, args...))
}

// next reads the next token: a number, a name, or one punctuation mark.
func (p *exprParser) next() {
	for p.pos < len(p.src) && p.src[p.pos] == ' ' {
		p.pos++
	}
	p.at = p.pos
	if p.pos >= len(p.src) {
		p.tok = ""
		return
	}
	start := p.pos
	ch := rune(p.src[p.pos])
	switch {
	case unicode.IsDigit(ch):
		for p.pos < len(p.src) && unicode.IsDigit(rune(p.src[p.pos])) {
			p.pos++
		}
	case unicode.IsLetter(ch):
		for p.pos < len(p.src) && unicode.IsLetter(rune(p.src[p.pos])) {
			p.pos++
		}
	default:
		p.pos++
	}
	p.tok = p.src[start:p.pos]
}

func (p *exprParser) sum() (*exprNode, error) {
	l, err := p.product()
	if err != nil {
		return nil, err
	}
	for p.tok == "+" || p.tok == "-" {
		kind := byte('+')
		if p.tok == "-" {
			kind = 's'
		}
		p.next()
		r, err := p.product()
		if err != nil {
			return nil, err
		}
		l = &exprNode{kind: kind, left: l, right: r}
	}
	return l, nil
}

func (p *exprParser) product() (*exprNode, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.tok == "*" {
		p.next()
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		l = &exprNode{kind: '*', left: l, right: r}
	}
	return l, nil
}

func (p *exprParser) unary() (*exprNode, error) {
	if p.tok == "-" {
		p.next()
		n, err := p.unary()
		if err != nil {
			return nil, err
		}
		return &exprNode{kind: '-', left: n}, nil
	}
	return p.primary()
}

func (p *exprParser) primary() (*exprNode, error) {
	tok := p.tok
	switch {
	case tok == "":
		return nil, p.errorf("unexpected end")
	case tok == "(":
		p.next()
		n, err := p.sum()
		if err != nil {
			return nil, err
		}
		if p.tok != ")" {
			return nil, p.errorf("missing )")
		}
		p.next()
		return n, nil
	case unicode.IsDigit(rune(tok[0])):
		n, err := strconv.ParseInt(tok, 10, 64)
		if err != nil {
			return nil, p.errorf("%s does not fit a 64-bit integer", tok)
		}
		p.next()
		return &exprNode{kind: 'n', num: n}, nil
	case tok == "held" || tok == "granted":
		p.next()
		return &exprNode{kind: 'v', name: tok}, nil
	case tok == "min" || tok == "max":
		kind := byte('m')
		if tok == "max" {
			kind = 'M'
		}
		p.next()
		if p.tok != "(" {
			return nil, p.errorf("%s needs (a, b)", tok)
		}
		p.next()
		l, err := p.sum()
		if err != nil {
			return nil, err
		}
		if p.tok != "," {
			return nil, p.errorf("%s needs two arguments separated by a comma", tok)
		}
		p.next()
		r, err := p.sum()
		if err != nil {
			return nil, err
		}
		if p.tok != ")" {
			return nil, p.errorf("missing ) after %s's arguments", tok)
		}
		p.next()
		return &exprNode{kind: kind, left: l, right: r}, nil
	}
	return nil, p.errorf("unknown %q", tok)
}

// EncodeBulkOps writes ops back in the form DecodeBulkOps reads, with
// each expression as its text, so a job's definition can be stored.
func EncodeBulkOps(ops []BulkOp) ([]byte, error) {
	list := make([]any, len(ops))
	for i, b := range ops {
		raw, err := json.Marshal(b.Op)
		if err != nil {
			return nil, err
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			return nil, err
		}
		if b.Expr != nil {
			field := "amount"
			if b.Op.Kind == OpItemGrant || b.Op.Kind == OpItemConsume {
				field = "count"
			}
			m[field] = b.Expr.text
		}
		list[i] = m
	}
	return json.Marshal(list)
}
