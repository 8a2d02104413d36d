--[[
Receipts: a MarketplaceService.ProcessReceipt for developer products that
is safe across servers. Roblox delivers a receipt again until the callback
answers PurchaseGranted, possibly on another server; each grant is sent
under an idempotency key derived from the receipt's PurchaseId, so a second
delivery, wherever it lands, answers the first one's outcome instead of
granting twice, and PurchaseGranted is answered only once the grant is
committed.

	local Receipts = require(script.Parent.Receipts)
	MarketplaceService.ProcessReceipt = Receipts.handler(sync, {
		[123456] = { { op = "currency.add", currency = "gems", amount = 500 } },
	})
]]

local Receipts = {}

function Receipts.handler(sync, products)
	local Players = game:GetService("Players")
	return function(receipt)
		local ops = products[receipt.ProductId]
		if ops == nil then
			warn("ProcessReceipt: no grant is configured for product " .. tostring(receipt.ProductId))
			return Enum.ProductPurchaseDecision.NotProcessedYet
		end
		local player = Players:GetPlayerByUserId(receipt.PlayerId)
		if player == nil then
			-- Roblox delivers the receipt again when the player next joins.
			return Enum.ProductPurchaseDecision.NotProcessedYet
		end
		local ok, result = sync:MutateAsync(player, ops, { idempotencyKey = "receipt:" .. tostring(receipt.PurchaseId) })
		if ok then
			return Enum.ProductPurchaseDecision.PurchaseGranted
		end
		if result.code ~= "UNAVAILABLE" and result.code ~= "NOT_JOINED" and result.code ~= "SESSION_LOST" then
			-- Refused (a cap, a config without the currency): it will be refused
			-- again, so tell support rather than wait for a delivery that works.
			warn("ProcessReceipt: purchase " .. tostring(receipt.PurchaseId) .. " refused: " .. tostring(result))
		end
		return Enum.ProductPurchaseDecision.NotProcessedYet
	end
end

return Receipts
