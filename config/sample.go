// Package config holds the sample game config that studios copy and edit.
// It is built into the binary, so the service starts on it from any
// directory when SAVESYNC_GAME_CONFIG is unset.
package config

import _ "embed"

// SampleGameFile is the name of the sample game config in this directory,
// for messages that say where the built-in default comes from.
const SampleGameFile = "config/sample-game.json"

// SampleGame is the content of sample-game.json as it was at build time.
//
//go:embed sample-game.json
var SampleGame []byte
