// Package roblox ships the Luau module that Roblox game servers use to talk
// to savesync (SaveSync.lua, documented in README.md), and tests it: the
// module runs under a Lua 5.1 interpreter with stand-ins for the Roblox
// services, against the real service started in-process.
package roblox

import _ "embed"

// ModuleSource is the text of SaveSync.lua, the ModuleScript game
// developers place in ServerScriptService.
//
//go:embed SaveSync.lua
var ModuleSource string
