--[[
LinkAccount (server): redeems the link code a player types in the
companion-link panel. The client sends only the text; the server decides,
and each player may try a few codes a minute here (SaveSync limits wrong
codes per player as well), so a client cannot guess codes.
]]

local ReplicatedStorage = game:GetService("ReplicatedStorage")
local ServerScriptService = game:GetService("ServerScriptService")

local sync = require(ServerScriptService:WaitForChild("Sync"))

local remote = Instance.new("RemoteFunction")
remote.Name = "RedeemLinkCode"
remote.Parent = ReplicatedStorage

-- At most 3 tries per player per 30 seconds, whatever the code.
local TRIES, WINDOW = 3, 30
local tries = {}

remote.OnServerInvoke = function(player, code)
	if type(code) ~= "string" or #code > 32 then
		return false, "Type the code shown in the companion app."
	end
	local now = os.clock()
	local recent = {}
	for _, at in ipairs(tries[player.UserId] or {}) do
		if now - at < WINDOW then
			table.insert(recent, at)
		end
	end
	if #recent >= TRIES then
		tries[player.UserId] = recent
		return false, "Too many tries. Wait a little, then try again."
	end
	table.insert(recent, now)
	tries[player.UserId] = recent
	local ok, result = sync:RedeemLinkCodeAsync(player, code)
	if ok then
		return true, "Linked! Your progress now shows in the companion app."
	end
	return false, result.playerMessage
end

game:GetService("Players").PlayerRemoving:Connect(function(player)
	tries[player.UserId] = nil
end)
