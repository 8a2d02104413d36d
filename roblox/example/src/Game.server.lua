--[[
Game: joins and leaves players through SaveSync, keeps a leaderboard in
step with each save, pays coins for time played, sells gems as developer
products and an in-game starter pack, and teleports players to another
place.
]]

local MarketplaceService = game:GetService("MarketplaceService")
local Players = game:GetService("Players")
local ReplicatedStorage = game:GetService("ReplicatedStorage")
local ServerScriptService = game:GetService("ServerScriptService")
local TeleportService = game:GetService("TeleportService")

local sync = require(ServerScriptService:WaitForChild("Sync"))
local Receipts = require(ServerScriptService:WaitForChild("Receipts"))

-- Developer products: product id -> what a purchase grants.
local PRODUCTS = {
	[123456] = { { op = "currency.add", currency = "gems", amount = 500 } },
	[123457] = { { op = "currency.add", currency = "gems", amount = 1200 } },
}
local ARENA_PLACE_ID = 987654321

-- Leaderboard ----------------------------------------------------------

local function showSave(player, save)
	local stats = player:FindFirstChild("leaderstats")
	if not stats then
		stats = Instance.new("Folder")
		stats.Name = "leaderstats"
		stats.Parent = player
		for _, name in ipairs({ "Coins", "Gems", "XP" }) do
			local value = Instance.new("IntValue")
			value.Name = name
			value.Parent = stats
		end
	end
	stats.Coins.Value = save.currencies and save.currencies.coins or 0
	stats.Gems.Value = save.currencies and save.currencies.gems or 0
	stats.XP.Value = save.stats and save.stats.xp or 0
end

sync.Changed:Connect(function(player, save)
	if player.Parent then
		showSave(player, save)
	end
end)

-- Joining and leaving --------------------------------------------------

Players.PlayerAdded:Connect(function(player)
	local save, err = sync:JoinAsync(player)
	if not save then
		if err.code == "NOT_JOINED" then
			return -- the player left while their save loaded
		elseif err.code == "SAVE_MIGRATION_FAILED" then
			warn("save of", player.UserId, "failed migration step", err.details.step, err.details.field)
			player:Kick("Your save needs a look from support. Please contact us.")
		elseif err.code == "SCHEMA_TOO_NEW" then
			player:Kick("A newer version of the game is live. Please rejoin.")
		else
			player:Kick("Could not load your save (" .. err.code .. "). Please rejoin.")
		end
		return
	end
	showSave(player, save)
end)

Players.PlayerRemoving:Connect(function(player)
	sync:LeaveAsync(player)
end)

sync.MutationRefused:Connect(function(player, mutationId, err)
	warn("refused for", player.UserId, err.code, err.message)
end)

-- Playing --------------------------------------------------------------

-- Ten coins and some xp for every minute played.
task.spawn(function()
	while true do
		task.wait(60)
		for _, player in ipairs(Players:GetPlayers()) do
			sync:Mutate(player, {
				{ op = "currency.add", currency = "coins", amount = 10 },
				{ op = "xp.add", amount = 25 },
			})
		end
	end
end)

-- Shop -----------------------------------------------------------------

MarketplaceService.ProcessReceipt = Receipts.handler(sync, PRODUCTS)

local buyStarter = Instance.new("RemoteFunction")
buyStarter.Name = "BuyStarterPack"
buyStarter.Parent = ReplicatedStorage
buyStarter.OnServerInvoke = function(player)
	-- Price and grants come from the service's catalog, never the client.
	local ok, result = sync:MutateAsync(player, { op = "purchase", sku = "starter" })
	if ok then
		return true, "Starter pack bought!"
	elseif result.code == "INSUFFICIENT_FUNDS" then
		return false, "You need 50 coins."
	end
	return false, "The shop is busy. Try again."
end

-- Teleport -------------------------------------------------------------

local travel = Instance.new("RemoteEvent")
travel.Name = "TravelToArena"
travel.Parent = ReplicatedStorage
travel.OnServerEvent:Connect(function(player)
	local options = Instance.new("TeleportOptions")
	options:SetTeleportData({ from = game.PlaceId })
	-- PlayerRemoving runs LeaveAsync here; the arena's JoinAsync asks this
	-- server to release the player and waits for it.
	local ok, err = pcall(TeleportService.TeleportAsync, TeleportService, ARENA_PLACE_ID, { player }, options)
	if not ok then
		warn("teleport of", player.UserId, "failed:", err)
	end
end)
