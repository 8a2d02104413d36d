package handlers

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/savesync/savesync/save"
)

// ServerKeys authenticates Roblox game servers. Keys are configured as
// SHA-256 hashes (the key itself lives only in a Roblox Secret), each scoped
// to one universe; a universe may have two keys at once so a key can be
// rotated without downtime.
type ServerKeys struct {
	keys []serverKey
}

type serverKey struct {
	universe int64
	hash     [sha256.Size]byte
}

// maxKeysPerUniverse allows one current and one next key during rotation.
const maxKeysPerUniverse = 2

// ParseServerKeys reads "universeId:sha256hex" pairs separated by commas.
func ParseServerKeys(spec string) (*ServerKeys, error) {
	k := &ServerKeys{}
	perUniverse := map[int64]int{}
	for i, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		u, h, ok := strings.Cut(part, ":")
		universe, err := strconv.ParseInt(u, 10, 64)
		if !ok || err != nil || universe <= 0 {
			return nil, fmt.Errorf("server key %d: want universeId:sha256hex, got %q", i+1, part)
		}
		raw, err := hex.DecodeString(h)
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("server key %d: the hash must be 64 hex characters (sha256 of the key), got %d characters", i+1, len(h))
		}
		perUniverse[universe]++
		if perUniverse[universe] > maxKeysPerUniverse {
			return nil, fmt.Errorf("server key %d: universe %d has more than %d keys; keep the current and the next key only", i+1, universe, maxKeysPerUniverse)
		}
		var sk serverKey
		sk.universe = universe
		copy(sk.hash[:], raw)
		k.keys = append(k.keys, sk)
	}
	return k, nil
}

// AddKey accepts a plain key for a universe (development mode only).
func (k *ServerKeys) AddKey(universe int64, key string) {
	k.keys = append(k.keys, serverKey{universe: universe, hash: sha256.Sum256([]byte(key))})
}

// Universes lists the universes the keys belong to, sorted.
func (k *ServerKeys) Universes() []int64 {
	var out []int64
	for _, sk := range k.keys {
		if !slices.Contains(out, sk.universe) {
			out = append(out, sk.universe)
		}
	}
	slices.Sort(out)
	return out
}

// Len is the number of configured keys.
func (k *ServerKeys) Len() int { return len(k.keys) }

// HashKey is the configured form of a server key.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// universe returns the universe a presented key belongs to. Every
// configured hash is compared, in constant time, whatever matches.
func (k *ServerKeys) universe(key string) (int64, bool) {
	sum := sha256.Sum256([]byte(key))
	var found int64
	for _, sk := range k.keys {
		if subtle.ConstantTimeCompare(sum[:], sk.hash[:]) == 1 {
			found = sk.universe
		}
	}
	return found, found != 0
}

// actorKey is where the authenticated caller is kept on the request.
const actorKey = "savesync.actor"

// RequireServerKey admits requests carrying a configured server key.
func (k *ServerKeys) RequireServerKey() gin.HandlerFunc {
	return func(c *gin.Context) {
		token, ok := bearer(c.GetHeader("Authorization"))
		if !ok {
			writeError(c, save.Errorf(save.CodeUnauthenticated, "send the server key as 'Authorization: Bearer <key>'"))
			return
		}
		u, ok := k.universe(token)
		if !ok {
			writeError(c, save.Errorf(save.CodeUnauthenticated, "the server key is not valid; check the Roblox Secret and SAVESYNC_SERVER_KEYS"))
			return
		}
		c.Set(actorKey, save.Actor{Kind: save.ActorServer, ID: "universe/" + strconv.FormatInt(u, 10)})
		c.Next()
	}
}

// actorOf returns the caller set by the authentication middleware.
func actorOf(c *gin.Context) save.Actor {
	if a, ok := c.Get(actorKey); ok {
		return a.(save.Actor)
	}
	return save.Actor{}
}

// bearer extracts the token of an "Authorization: Bearer" header.
func bearer(h string) (string, bool) {
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	t := strings.TrimSpace(h[len(prefix):])
	return t, t != ""
}
