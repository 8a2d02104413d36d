package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/savesync/savesync/save"
)

// LinkCodeTTL is how long a link code can be redeemed after it is issued:
// long enough to open the game and type it, short enough that a code seen
// over someone's shoulder is soon worthless.
const LinkCodeTTL = 10 * time.Minute

// LinkCodeAlphabet is the characters of link codes: upper-case letters and
// digits without the look-alikes 0/O and 1/I/L, so a player can type a code
// they read on another screen.
const LinkCodeAlphabet = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"

// LinkCodeLength is the number of characters in a link code: 31^8, about
// 8.5·10^11 codes, against a handful valid at any time for 10 minutes.
const LinkCodeLength = 8

// Reasons in the details of link errors, so clients can branch on them.
const (
	// ReasonNotLinked: the companion user has no linked Roblox player.
	ReasonNotLinked = "NOT_LINKED"
	// ReasonAlreadyLinked: the companion user is linked to a Roblox player already.
	ReasonAlreadyLinked = "ALREADY_LINKED"
	// ReasonPlayerLinked: the Roblox player is linked to another companion user.
	ReasonPlayerLinked = "PLAYER_LINKED_ELSEWHERE"
	// ReasonCodeUnknown: no such link code was issued.
	ReasonCodeUnknown = "LINK_CODE_UNKNOWN"
	// ReasonCodeExpired: the link code is older than LinkCodeTTL.
	ReasonCodeExpired = "LINK_CODE_EXPIRED"
	// ReasonCodeUsed: the link code was redeemed already (codes are single-use).
	ReasonCodeUsed = "LINK_CODE_USED"
)

// MaxLiveLinkCodes bounds the live (unused, unexpired) link codes of one
// companion account. Issuing one more revokes the oldest rather than
// refusing: the code a user looks at is the one that works, and a user
// who asked again because a code scrolled away is not turned down.
const MaxLiveLinkCodes = 5

// maxCodeAttempts bounds the retries when a fresh code collides with an
// existing one (about one chance in 10^12 per try while codes are few).
const maxCodeAttempts = 5

// LinkCode is an issued, not yet redeemed link code.
type LinkCode struct {
	Code      string    `json:"code"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// Link binds a Firebase user (the companion account) to a Roblox player.
type Link struct {
	UID      string    `json:"uid"`
	UserID   int64     `json:"userId"`
	LinkedAt time.Time `json:"linkedAt"`
}

// CreateLinkCode issues a single-use code that binds uid to whichever
// Roblox player's game server redeems it within LinkCodeTTL. It keeps at
// most MaxLiveLinkCodes of uid's codes live, revoking the oldest, and
// deletes uid's expired ones. Codes issued concurrently may outnumber the
// bound for a moment: each issue trims after its own code is written, so
// the last one trims them all.
// Errors: INVALID_ARGUMENT (empty uid), PERMISSION_DENIED with reason
// ALREADY_LINKED (unlink first).
func (s *Store) CreateLinkCode(ctx context.Context, uid string) (_ LinkCode, err error) {
	defer wrapOp(&err, "store.CreateLinkCode")
	if uid == "" || strings.Contains(uid, "/") {
		return LinkCode{}, save.Errorf(save.CodeInvalidArgument, "a link code needs a signed-in user with a Firebase uid without '/'")
	}
	if l, ok, err := s.LinkOf(ctx, uid); err != nil {
		return LinkCode{}, err
	} else if ok {
		return LinkCode{}, alreadyLinked(l)
	}
	for attempt := 0; ; attempt++ {
		code, err := newLinkCode()
		if err != nil {
			return LinkCode{}, err
		}
		now := s.now().UTC().Truncate(time.Microsecond)
		lc := LinkCode{Code: code, ExpiresAt: now.Add(LinkCodeTTL)}
		_, err = s.fs.Doc(linkCodePath(code)).Create(ctx, map[string]any{
			"code":      code,
			"uid":       uid,
			"createdAt": now,
			"expiresAt": lc.ExpiresAt,
		})
		if status.Code(err) == codes.AlreadyExists && attempt+1 < maxCodeAttempts {
			continue
		}
		if err != nil {
			return LinkCode{}, err
		}
		// The code is issued: a failed trim only leaves older codes live
		// until the next issue trims them.
		_ = s.revokeOldLinkCodes(ctx, uid, code, now)
		return lc, nil
	}
}

// revokeOldLinkCodes deletes uid's expired codes and its live ones beyond
// the newest MaxLiveLinkCodes, never keep (the code just issued). A code
// redeemed meanwhile is left alone: the deletes are conditional on the
// documents being as read.
func (s *Store) revokeOldLinkCodes(ctx context.Context, uid, keep string, now time.Time) error {
	docs, err := s.fs.Collection(linkCodesCollection).Where("uid", "==", uid).Documents(ctx).GetAll()
	if err != nil {
		return err
	}
	var live, drop []*firestore.DocumentSnapshot
	for _, d := range docs {
		data := d.Data()
		if used, _ := data["userId"].(int64); used != 0 || d.Ref.ID == keep {
			continue
		}
		if exp, _ := data["expiresAt"].(time.Time); !now.Before(exp) {
			drop = append(drop, d)
			continue
		}
		live = append(live, d)
	}
	created := func(d *firestore.DocumentSnapshot) time.Time { t, _ := d.Data()["createdAt"].(time.Time); return t }
	sort.Slice(live, func(i, j int) bool {
		if ti, tj := created(live[i]), created(live[j]); !ti.Equal(tj) {
			return ti.After(tj)
		}
		return live[i].Ref.ID > live[j].Ref.ID
	})
	if len(live) > MaxLiveLinkCodes-1 {
		drop = append(drop, live[MaxLiveLinkCodes-1:]...)
	}
	for _, d := range drop {
		_, err := d.Ref.Delete(ctx, firestore.LastUpdateTime(d.UpdateTime))
		if err != nil && status.Code(err) != codes.FailedPrecondition && status.Code(err) != codes.NotFound {
			return err
		}
	}
	return nil
}

// RedeemLinkCode binds the code's companion user to the Roblox player
// userID, in one transaction: the code is marked used, the player records
// ownerUid (its document is created at version 0 if the player was never
// seen), and links/{uid} records the player. Redeeming a code again for
// the same player answers the same link, so a game server may retry.
//
// Errors: INVALID_ARGUMENT (malformed code or user id), NOT_FOUND with
// reason LINK_CODE_UNKNOWN, LINK_CODE_EXPIRED or LINK_CODE_USED,
// PERMISSION_DENIED with reason ALREADY_LINKED (the companion user is linked
// to another player) or PLAYER_LINKED_ELSEWHERE (the player is linked to
// another companion user), UNAVAILABLE. Concurrent redemptions touching the
// same code, companion user or player are serialised by the transaction:
// exactly one wins and the others get one of these errors.
func (s *Store) RedeemLinkCode(ctx context.Context, code string, userID int64) (_ Link, err error) {
	defer wrapOp(&err, "store.RedeemLinkCode(%d)", userID)
	code, err = NormalizeLinkCode(code)
	if err != nil {
		return Link{}, err
	}
	if userID <= 0 {
		return Link{}, save.Errorf(save.CodeInvalidArgument, "userId must be a positive Roblox user id")
	}
	// A code's uid never changes, so it is read once, before the
	// transaction, to know which links/{uid} document to lock with it.
	snap, err := s.fs.Doc(linkCodePath(code)).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return Link{}, linkCodeError(ReasonCodeUnknown, "no such link code: check the code shown in the companion app")
	}
	if err != nil {
		return Link{}, err
	}
	uid, _ := snap.Data()["uid"].(string)
	if uid == "" || strings.Contains(uid, "/") {
		return Link{}, fmt.Errorf("store.RedeemLinkCode(%s): the code document has no valid uid", code)
	}
	codeName := s.docName(linkCodePath(code))
	linkName := s.docName(linkPath(uid))
	playerName := s.docName(playerPath(userID))
	var link Link
	_, err = s.runTxn(ctx, []string{codeName, linkName, playerName}, func(docs map[string]*firestorepb.Document) ([]*firestorepb.Write, error) {
		now := s.now().UTC().Truncate(time.Microsecond)
		c, ok := docs[codeName]
		if !ok {
			return nil, linkCodeError(ReasonCodeUnknown, "no such link code: check the code shown in the companion app")
		}
		cf := c.GetFields()
		existing, linked := docs[linkName]
		if used := fieldInt(cf, "userId"); used != 0 {
			if used == userID && linked && fieldInt(existing.GetFields(), "userId") == userID {
				link = decodeLink(uid, existing.GetFields())
				return nil, nil
			}
			return nil, linkCodeError(ReasonCodeUsed, "this link code was already used: ask for a new code in the companion app")
		}
		if !now.Before(fieldTime(cf, "expiresAt")) {
			return nil, linkCodeError(ReasonCodeExpired, "this link code has expired (codes last %s): ask for a new code in the companion app", LinkCodeTTL)
		}
		if linked && fieldInt(existing.GetFields(), "userId") != userID {
			return nil, alreadyLinked(decodeLink(uid, existing.GetFields()))
		}
		p := s.decodePlayer(userID, docs[playerName])
		if p.OwnerUID != "" && p.OwnerUID != uid {
			return nil, save.Errorf(save.CodePermissionDenied, "Roblox user %d is already linked to another companion account; unlink it there first", userID).
				WithDetail("reason", ReasonPlayerLinked).WithDetail("userId", userID)
		}
		writes := []*firestorepb.Write{s.redeemCodeWrite(codeName, userID, now)}
		if linked {
			// Already linked to this player (an earlier code): only use up the code.
			link = decodeLink(uid, existing.GetFields())
		} else {
			link = Link{UID: uid, UserID: userID, LinkedAt: now}
			writes = append(writes, s.linkWrite(link))
		}
		if p.OwnerUID != uid {
			writes = append(writes, s.ownerWrite(p, uid, now))
		}
		return writes, nil
	})
	if err != nil {
		return Link{}, err
	}
	return link, nil
}

// errLinkMoved ends an unlink attempt whose link changed under it.
var errLinkMoved = errors.New("store: the link changed during unlink")

// maxUnlinkAttempts bounds unlink's retries when the link changes meanwhile.
const maxUnlinkAttempts = 3

// Unlink removes uid's link: the links/{uid} document and the player's
// ownerUid. It reports the link it removed; ok is false when uid was not
// linked, which is not an error, so a repeated unlink is harmless.
// Errors: INVALID_ARGUMENT (empty uid), UNAVAILABLE.
func (s *Store) Unlink(ctx context.Context, uid string) (link Link, ok bool, err error) {
	defer wrapOp(&err, "store.Unlink")
	if uid == "" {
		return Link{}, false, save.Errorf(save.CodeInvalidArgument, "unlinking needs a signed-in user")
	}
	linkName := s.docName(linkPath(uid))
	for attempt := 0; attempt < maxUnlinkAttempts; attempt++ {
		seen, found, err := s.LinkOf(ctx, uid)
		if err != nil || !found {
			return Link{}, false, err
		}
		playerName := s.docName(playerPath(seen.UserID))
		_, err = s.runTxn(ctx, []string{linkName, playerName}, func(docs map[string]*firestorepb.Document) ([]*firestorepb.Write, error) {
			d, exists := docs[linkName]
			if !exists {
				ok = false
				return nil, nil
			}
			link, ok = decodeLink(uid, d.GetFields()), true
			if link.UserID != seen.UserID {
				return nil, errLinkMoved
			}
			writes := []*firestorepb.Write{{Operation: &firestorepb.Write_Delete{Delete: linkName}}}
			if p := s.decodePlayer(link.UserID, docs[playerName]); p.Exists && p.OwnerUID == uid {
				writes = append(writes, &firestorepb.Write{
					Operation:       &firestorepb.Write_Update{Update: &firestorepb.Document{Name: playerName}},
					UpdateMask:      &firestorepb.DocumentMask{FieldPaths: []string{"linkedAt", "ownerUid"}},
					CurrentDocument: &firestorepb.Precondition{ConditionType: &firestorepb.Precondition_Exists{Exists: true}},
				})
			}
			return writes, nil
		})
		if errors.Is(err, errLinkMoved) {
			continue
		}
		if err != nil {
			return Link{}, false, err
		}
		return link, ok, nil
	}
	return Link{}, false, save.Errorf(save.CodeUnavailable, "the link kept changing while unlinking; retry")
}

// LinkOf returns the Roblox player uid is linked to; ok is false when
// there is none. It is the authority for which player a companion user may
// reach (the robloxUserId claim in a token may be up to an hour old).
func (s *Store) LinkOf(ctx context.Context, uid string) (_ Link, _ bool, err error) {
	defer wrapOp(&err, "store.LinkOf")
	if uid == "" || strings.Contains(uid, "/") {
		return Link{}, false, nil
	}
	snap, err := s.fs.Doc(linkPath(uid)).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return Link{}, false, nil
	}
	if err != nil {
		return Link{}, false, err
	}
	fields, err := encodeFields(snap.Data())
	if err != nil {
		return Link{}, false, err
	}
	return decodeLink(uid, fields), true, nil
}

// NormalizeLinkCode accepts a code as a player may type it (any case,
// with spaces or dashes) and returns its stored form.
// Errors: INVALID_ARGUMENT naming what is wrong.
func NormalizeLinkCode(raw string) (string, error) {
	var b strings.Builder
	for _, r := range strings.ToUpper(raw) {
		switch {
		case r == ' ' || r == '-':
			continue
		case strings.ContainsRune(LinkCodeAlphabet, r):
			b.WriteRune(r)
		default:
			return "", save.Errorf(save.CodeInvalidArgument, "a link code has %d characters from %s; got %q", LinkCodeLength, LinkCodeAlphabet, raw).
				WithDetail("field", "code")
		}
	}
	if b.Len() != LinkCodeLength {
		return "", save.Errorf(save.CodeInvalidArgument, "a link code has %d characters; got %d", LinkCodeLength, b.Len()).
			WithDetail("field", "code")
	}
	return b.String(), nil
}

// redeemCodeWrite marks a code used by a player.
func (s *Store) redeemCodeWrite(codeName string, userID int64, now time.Time) *firestorepb.Write {
	return &firestorepb.Write{
		Operation: &firestorepb.Write_Update{Update: &firestorepb.Document{Name: codeName, Fields: map[string]*firestorepb.Value{
			"userId": intValue(userID),
			"usedAt": timeValue(now),
		}}},
		UpdateMask:      &firestorepb.DocumentMask{FieldPaths: []string{"usedAt", "userId"}},
		CurrentDocument: &firestorepb.Precondition{ConditionType: &firestorepb.Precondition_Exists{Exists: true}},
	}
}

// linkWrite creates links/{uid}; the exists:false precondition is what
// keeps one companion user to one player when codes race.
func (s *Store) linkWrite(l Link) *firestorepb.Write {
	return &firestorepb.Write{
		Operation: &firestorepb.Write_Update{Update: &firestorepb.Document{Name: s.docName(linkPath(l.UID)), Fields: map[string]*firestorepb.Value{
			"uid":      stringValue(l.UID),
			"userId":   intValue(l.UserID),
			"linkedAt": timeValue(l.LinkedAt),
		}}},
		CurrentDocument: &firestorepb.Precondition{ConditionType: &firestorepb.Precondition_Exists{Exists: false}},
	}
}

// ownerWrite records the owner on the player, creating the player's
// document at version 0 with the starting save when it does not exist.
func (s *Store) ownerWrite(p Player, uid string, now time.Time) *firestorepb.Write {
	return s.upsertPlayer(p, map[string]*firestorepb.Value{
		"ownerUid": stringValue(uid),
		"linkedAt": timeValue(now),
	}, now)
}

// newLinkCode draws a code from LinkCodeAlphabet with crypto/rand: a code
// is a credential for a few minutes, so it must not be predictable. Bytes
// past the largest multiple of the alphabet's size are redrawn, so every
// character is equally likely.
func newLinkCode() (string, error) {
	n := len(LinkCodeAlphabet)
	limit := 256 - 256%n
	out := make([]byte, 0, LinkCodeLength)
	var buf [2 * LinkCodeLength]byte
	for draws := 0; len(out) < LinkCodeLength; draws++ {
		if draws == 16 {
			return "", fmt.Errorf("store: the random source keeps returning unusable bytes")
		}
		if _, err := rand.Read(buf[:]); err != nil {
			return "", err
		}
		for _, b := range buf {
			if int(b) < limit && len(out) < LinkCodeLength {
				out = append(out, LinkCodeAlphabet[int(b)%n])
			}
		}
	}
	return string(out), nil
}

// decodeLink reads a links/{uid} document.
func decodeLink(uid string, f map[string]*firestorepb.Value) Link {
	return Link{UID: uid, UserID: fieldInt(f, "userId"), LinkedAt: fieldTime(f, "linkedAt")}
}

func alreadyLinked(l Link) error {
	return save.Errorf(save.CodePermissionDenied, "this companion account is already linked to Roblox user %d; unlink it first", l.UserID).
		WithDetail("reason", ReasonAlreadyLinked).WithDetail("userId", l.UserID)
}

func linkCodeError(reason, format string, args ...any) error {
	return save.Errorf(save.CodeNotFound, format, args...).WithDetail("reason", reason).WithDetail("field", "code")
}
