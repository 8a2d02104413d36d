--[[
LinkAccount (client): a small panel with a TextBox for the companion app's
link code. The text goes to the server through the RedeemLinkCode
RemoteFunction; the answer is shown under the box.
]]

local Players = game:GetService("Players")
local ReplicatedStorage = game:GetService("ReplicatedStorage")

local remote = ReplicatedStorage:WaitForChild("RedeemLinkCode")
local gui = Instance.new("ScreenGui")
gui.Name = "LinkAccount"
gui.ResetOnSpawn = false

local frame = Instance.new("Frame")
frame.Size = UDim2.fromOffset(320, 120)
frame.Position = UDim2.new(0.5, -160, 1, -140)
frame.Parent = gui

local box = Instance.new("TextBox")
box.PlaceholderText = "Code from the companion app"
box.Text = ""
box.ClearTextOnFocus = false
box.Size = UDim2.new(1, -110, 0, 36)
box.Position = UDim2.fromOffset(10, 10)
box.Parent = frame

local button = Instance.new("TextButton")
button.Text = "Link"
button.Size = UDim2.fromOffset(80, 36)
button.Position = UDim2.new(1, -90, 0, 10)
button.Parent = frame

local status = Instance.new("TextLabel")
status.Text = "Link this account to the companion app."
status.TextWrapped = true
status.BackgroundTransparency = 1
status.Size = UDim2.new(1, -20, 0, 56)
status.Position = UDim2.fromOffset(10, 54)
status.Parent = frame

local busy = false
local function submit()
	if busy then
		return
	end
	busy = true
	button.Text = "…"
	local ok, linked, message = pcall(remote.InvokeServer, remote, box.Text)
	if not ok then
		status.Text = "The server did not answer. Try again."
	else
		status.Text = message
		if linked then
			box.Text = ""
		end
	end
	button.Text = "Link"
	busy = false
end

button.Activated:Connect(submit)
box.FocusLost:Connect(function(enterPressed)
	if enterPressed then
		submit()
	end
end)
gui.Parent = Players.LocalPlayer:WaitForChild("PlayerGui")
