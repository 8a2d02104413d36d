--[[
Sync: the place's one SaveSync, shared by its server scripts
(require(ServerScriptService.Sync)). In Studio it runs in mock mode with
the game config's rules; on Roblox servers it talks to the service.
]]

local ServerScriptService = game:GetService("ServerScriptService")
local SaveSync = require(ServerScriptService:WaitForChild("SaveSync"))

-- The game config the service runs with (game.json), for mock mode's
-- rules in Studio. Keep it in step with the service's.
local GAME_CONFIG = {
	currencies = {
		coins = { floor = 0, cap = 1000000000, start = 100 },
		gems = { floor = 0, cap = 1000000000, start = 0 },
	},
	stats = { xp = { floor = 0, start = 0 } },
	items = {
		sword = { stackable = false },
		potion = { stackable = true, maxStack = 99 },
	},
	loadoutSlots = { primary = { items = { "sword" } } },
	settings = { music = { type = "bool", default = true } },
	collections = { badges = { maxElements = 100 } },
	catalog = {
		starter = { price = { coins = 50 }, grants = { { op = "item.grant", item = "potion", count = 2 } } },
	},
}

return SaveSync.new({
	baseUrl = "https://savesync-abc123-uc.a.run.app",
	schemaVersion = 3,
	mockConfig = GAME_CONFIG,
})
