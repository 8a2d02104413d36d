package events

import (
	"encoding/json"
	"strconv"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/savesync/savesync/save"
)

// Attributes every event message carries, so consumers can dedupe on
// (userId, version) and filter without decoding the body. The ordering key
// is the user id too.
const (
	AttrUserID  = "userId"
	AttrVersion = "version"
	AttrEntryID = "entryId"
	// AttrHolderJobID is set on invalidations that a live game server must
	// receive: the job id of the server holding the player.
	AttrHolderJobID = "holderJobId"
)

// Invalidation is the JSON body of an invalidation message: a save changed
// and whoever caches it should refetch. HolderJobID names the game server
// that held the player at commit time (it must be told, through Open Cloud
// messaging); it is empty when no server but the writer held the player,
// for example a companion write to an offline player, which only the
// companion's own views need to hear about. Actor is the writer as
// save.Actor.SeenByGameServers shows it (kind only for companion and admin
// writers): invalidations are what game servers learn of, so they name no
// account; the audit topic carries the full actor.
type Invalidation struct {
	UserID       int64      `json:"userId"`
	Version      int64      `json:"version"`
	EntryID      string     `json:"entryId"`
	ChangedPaths []string   `json:"changedPaths"`
	Actor        save.Actor `json:"actor"`
	CommittedAt  time.Time  `json:"committedAt"`
	HolderJobID  string     `json:"holderJobId,omitempty"`
}

// needsInvalidation reports whether an event gets an invalidation message:
// when a game server other than the writer held the player, and for every
// write not made by a game server (the companion, support, the system),
// so every such write is announced even when no server holds the player.
func needsInvalidation(e save.Event) bool {
	return e.Invalidate || e.Actor.Kind != save.ActorServer
}

// invalidationMessage builds the invalidation message of an event.
func invalidationMessage(e save.Event) (*pubsub.Message, error) {
	inv := Invalidation{
		UserID:       e.UserID,
		Version:      e.Version,
		EntryID:      e.EntryID,
		ChangedPaths: e.ChangedPaths,
		Actor:        e.Actor.SeenByGameServers(),
		CommittedAt:  e.CommittedAt,
	}
	if e.Invalidate {
		inv.HolderJobID = e.HolderJobID
	}
	body, err := json.Marshal(inv)
	if err != nil {
		return nil, err
	}
	m := eventMessage(e, body)
	if inv.HolderJobID != "" {
		m.Attributes[AttrHolderJobID] = inv.HolderJobID
	}
	return m, nil
}

// auditMessage builds the audit message of an event: the whole ledger
// entry as committed.
func auditMessage(e save.Event) (*pubsub.Message, error) {
	body, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	return eventMessage(e, body), nil
}

func eventMessage(e save.Event, body []byte) *pubsub.Message {
	uid := strconv.FormatInt(e.UserID, 10)
	return &pubsub.Message{
		Data:        body,
		OrderingKey: uid,
		Attributes: map[string]string{
			AttrUserID:  uid,
			AttrVersion: strconv.FormatInt(e.Version, 10),
			AttrEntryID: e.EntryID,
		},
	}
}
