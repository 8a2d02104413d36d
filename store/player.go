package store

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"slices"
	"time"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/savesync/savesync/save"
)

// Player is a player's document as stored: the save in the schema it was
// last written with, its version, and who holds it.
type Player struct {
	UserID        int64
	Exists        bool
	Version       int64
	SchemaVersion int
	Raw           map[string]any
	Session       *Lease
	// LeaseEpoch is the last lease epoch granted for the player. It lives
	// beside the save, not in the session a leave clears, so epochs never
	// repeat: a document written before the field existed reads it from
	// its session, or 0 (the next grant is then 1).
	LeaseEpoch int64
	// LeaseKey is the player's secret from which session ids are derived
	// (see leaseSecret), so an id can be told issued or not for every
	// epoch from LeaseKeyFrom on without remembering past ids.
	LeaseKey     string
	LeaseKeyFrom int64
	OwnerUID     string
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Lease is a game server's claim on a player: the holder receives
// invalidations, and a join elsewhere must wait for expiry or steal it.
// Epoch grows by one per grant and fences out a replaced holder.
type Lease struct {
	ID         string    `json:"id"`
	JobID      string    `json:"jobId"`
	PlaceID    int64     `json:"placeId,omitempty"`
	Epoch      int64     `json:"epoch"`
	AcquiredAt time.Time `json:"acquiredAt"`
	ExpiresAt  time.Time `json:"expiresAt"`
}

// PlayerView is a save as callers see it: migrated to the current schema
// (in memory when read without a write) and rendered for JSON.
type PlayerView struct {
	UserID        int64          `json:"userId"`
	Version       int64          `json:"version"`
	SchemaVersion int            `json:"schemaVersion"`
	Save          map[string]any `json:"save"`
	Session       *Lease         `json:"session,omitempty"`
	Linked        bool           `json:"linked"`
	UpdatedAt     *time.Time     `json:"updatedAt,omitempty"`
}

// GetPlayer reads a player's save, migrated in memory to the current
// schema. A player never seen before reads as a new save at version 0.
// Errors: SAVE_MIGRATION_FAILED, SCHEMA_TOO_NEW.
func (s *Store) GetPlayer(ctx context.Context, userID int64) (_ PlayerView, err error) {
	defer wrapOp(&err, "store.GetPlayer(%d)", userID)
	p, err := s.readPlayer(ctx, userID)
	if err != nil {
		return PlayerView{}, err
	}
	st, err := s.currentState(p)
	if err != nil {
		return PlayerView{}, err
	}
	return s.view(p, st), nil
}

// readPlayer reads a player's document outside any transaction.
func (s *Store) readPlayer(ctx context.Context, userID int64) (Player, error) {
	snap, err := s.fs.Doc(playerPath(userID)).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return s.decodePlayer(userID, nil), nil
	}
	if err != nil {
		return Player{}, err
	}
	fields, err := encodeFields(snap.Data())
	if err != nil {
		return Player{}, err
	}
	return s.decodePlayer(userID, &firestorepb.Document{Fields: fields}), nil
}

// decodePlayer reads a player document; nil means it does not exist yet.
func (s *Store) decodePlayer(userID int64, doc *firestorepb.Document) Player {
	if doc == nil {
		return Player{UserID: userID, SchemaVersion: s.cfg.SchemaVersion}
	}
	f := doc.GetFields()
	p := Player{
		UserID:        userID,
		Exists:        true,
		Version:       fieldInt(f, "version"),
		SchemaVersion: int(fieldInt(f, "schemaVersion")),
		LeaseEpoch:    fieldInt(f, "leaseEpoch"),
		LeaseKey:      fieldString(f, "leaseKey"),
		LeaseKeyFrom:  fieldInt(f, "leaseKeyFrom"),
		OwnerUID:      fieldString(f, "ownerUid"),
		CreatedAt:     fieldTime(f, "createdAt"),
		UpdatedAt:     fieldTime(f, "updatedAt"),
	}
	if raw, ok := decodeValue(f["save"]).(map[string]any); ok {
		p.Raw = raw
	}
	if sess := f["session"].GetMapValue().GetFields(); sess != nil && fieldString(sess, "id") != "" {
		p.Session = &Lease{
			ID:         fieldString(sess, "id"),
			JobID:      fieldString(sess, "jobId"),
			PlaceID:    fieldInt(sess, "placeId"),
			Epoch:      fieldInt(sess, "epoch"),
			AcquiredAt: fieldTime(sess, "acquiredAt"),
			ExpiresAt:  fieldTime(sess, "expiresAt"),
		}
		p.LeaseEpoch = max(p.LeaseEpoch, p.Session.Epoch)
	}
	return p
}

// currentState migrates and decodes a player's save. A new player gets the
// config's starting save.
// Errors: SAVE_MIGRATION_FAILED, SCHEMA_TOO_NEW.
func (s *Store) currentState(p Player) (save.State, error) {
	if !p.Exists || p.Raw == nil {
		return s.cfg.NewState(), nil
	}
	return s.cfg.LoadState(p.Raw, p.SchemaVersion)
}

// view renders a player for callers.
func (s *Store) view(p Player, st save.State) PlayerView {
	v := PlayerView{
		UserID:        p.UserID,
		Version:       p.Version,
		SchemaVersion: s.cfg.SchemaVersion,
		Save:          st.View(),
		Session:       p.Session,
		Linked:        p.OwnerUID != "",
	}
	if !p.UpdatedAt.IsZero() {
		t := p.UpdatedAt
		v.UpdatedAt = &t
	}
	return v
}

// upsertPlayer writes fields to a player's document: an update of just
// those fields when the document exists, or its creation when it does not,
// with version 0 and the starting save unless fields carry their own.
func (s *Store) upsertPlayer(p Player, fields map[string]*firestorepb.Value, now time.Time) *firestorepb.Write {
	doc := &firestorepb.Document{Name: s.docName(playerPath(p.UserID)), Fields: fields}
	if p.Exists {
		return &firestorepb.Write{
			Operation:       &firestorepb.Write_Update{Update: doc},
			UpdateMask:      &firestorepb.DocumentMask{FieldPaths: slices.Sorted(maps.Keys(fields))},
			CurrentDocument: &firestorepb.Precondition{ConditionType: &firestorepb.Precondition_Exists{Exists: true}},
		}
	}
	if _, ok := fields["save"]; !ok {
		fields["save"], _ = encodeValue(s.cfg.NewState().Encode())
		fields["version"] = intValue(0)
		fields["schemaVersion"] = intValue(int64(s.cfg.SchemaVersion))
	}
	fields["userId"] = intValue(p.UserID)
	fields["createdAt"] = timeValue(now)
	fields["updatedAt"] = timeValue(now)
	return &firestorepb.Write{
		Operation:       &firestorepb.Write_Update{Update: doc},
		CurrentDocument: &firestorepb.Precondition{ConditionType: &firestorepb.Precondition_Exists{Exists: false}},
	}
}

// leaseFields encodes a lease for the player document.
func leaseFields(l *Lease) *firestorepb.Value {
	if l == nil {
		v, _ := encodeValue(nil)
		return v
	}
	v, _ := encodeValue(map[string]any{
		"id":         l.ID,
		"jobId":      l.JobID,
		"placeId":    l.PlaceID,
		"epoch":      l.Epoch,
		"acquiredAt": l.AcquiredAt,
		"expiresAt":  l.ExpiresAt,
	})
	return v
}

// jsonTree turns any JSON-marshalable value into the JSON-like tree the
// codec stores (maps, slices, strings, bools, int64 or float64).
func jsonTree(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	return numbersToGo(out), nil
}

// numbersToGo replaces json.Number with int64 (or float64 when not integral).
func numbersToGo(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = numbersToGo(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = numbersToGo(e)
		}
		return x
	default:
		return v
	}
}

// playerWrite writes the save and version after a group, creating the
// player document on its first mutation.
func (s *Store) playerWrite(p Player, saved map[string]any, version int64, now time.Time) (*firestorepb.Write, error) {
	saveValue, err := encodeValue(saved)
	if err != nil {
		return nil, err
	}
	return s.upsertPlayer(p, map[string]*firestorepb.Value{
		"version":       intValue(version),
		"schemaVersion": intValue(int64(s.cfg.SchemaVersion)),
		"save":          saveValue,
		"updatedAt":     timeValue(now),
	}, now), nil
}
