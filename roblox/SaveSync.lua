--[[
SaveSync: keeps each player's save in sync with a savesync service.

The service (backed by Firestore) is the one authority. This module is the
game server's cache of it: it loads a player's save on Join, applies every
Mutate optimistically and writes it through in the background, refetches a
save when someone else (the companion app, support) changed it, and releases
the player's session on Leave. See README.md beside this file.

Written in the part of Luau that is also Lua 5.1 (no compound assignment,
no continue, no string interpolation, no type annotations), and it never
yields inside pcall, so it also runs under a Lua 5.1 interpreter in tests.
]]

local SaveSync = {}
SaveSync.__index = SaveSync

SaveSync.VERSION = "1.1.0"

-- Ops whose mutation must carry expectedVersion (the service's versioned
-- strategy). They are sent only at the head of a player's queue, so the
-- version they carry is the one the player's earlier writes produced.
local VERSIONED = {
	["loadout.set"] = true,
	["inventory.swap"] = true,
	["save.replace"] = true,
}

-- Ops that need the confirmed version at send time: the versioned ones and
-- collection.remove (its observedVersion).
local NEEDS_HEAD = {
	["loadout.set"] = true,
	["inventory.swap"] = true,
	["save.replace"] = true,
	["collection.remove"] = true,
}

local DEFAULTS = {
	baseUrl = nil, -- required: "https://savesync-xxxx.a.run.app"
	mode = "auto", -- "auto" (mock in Studio, live on servers), "live" or "mock"
	mockConfig = nil, -- the game config (game.json as a table) whose rules mock mode applies
	mockSave = nil, -- function(userId) or table: a new player's save in mock mode
	import = nil, -- {dataStore, key, transform, profileStore, scope}: bring old saves over on first join
	secretName = "savesync_server_key", -- the Roblox Secret holding the server key
	schemaVersion = nil, -- required: the save schema this game code reads (sent on every join)
	jobId = nil, -- game.JobId
	placeId = nil, -- game.PlaceId
	maxAttempts = 3, -- attempts per mutation before it is dead-lettered
	backoffBase = 1, -- seconds before the 2nd attempt; doubles per attempt
	backoffMax = 8, -- ceiling of one backoff, in seconds
	requestsPerMinute = 400, -- this module's share of Roblox's 500 HTTP requests/min
	flushInterval = 0.2, -- how often queued mutations are gathered into one request
	maxBatch = 100, -- mutations per batch request (the service's limit)
	maxBatchBytes = 48 * 1024, -- body bytes per batch request (the service takes 64 KiB)
	joinAttempts = 3, -- attempts of the join request when the service is unavailable
	sessionHeldWait = 30, -- seconds Join waits for another server to release the player (longer than its Leave may take)
	stealAfterWait = true, -- then take the session over (the holder's deltas still apply)
	kickOnSessionLost = true, -- kick a player whose session another server took over
	sessionLostMessage = "Your progress continues on another server. Please rejoin.",
	joinReplayTimeout = 10, -- seconds Join waits for recovered mutations to settle
	mutateTimeout = 30, -- seconds MutateAsync waits for the service's answer
	handOffTimeout = 5, -- seconds a holder asked to release waits for the player's queue
	linkAttempts = 5, -- failed link codes a player may type within linkAttemptWindow
	linkAttemptWindow = 300, -- seconds
	leaveTimeout = 10, -- seconds Leave waits for the player's queue to drain
	releaseTimeout = 15, -- seconds Leave keeps retrying the release of the session
	closeBudget = 25, -- seconds BindToClose spends (Roblox allows 30)
	bindToClose = true, -- flush everything when the server shuts down
	topic = "savesync", -- the MessagingService topic the invalidation forwarder publishes on
	longPoll = true, -- poll GET /v1/servers/{jobId}/changes as well
	longPollSeconds = 25, -- how long one long-poll may wait on the service
	pollGap = 1, -- seconds between polls while MessagingService is not subscribed
	safetyPollGap = 60, -- seconds between polls while it is (messages are best effort)
	cacheStore = "SaveSyncSession", -- DataStore of the session cache
	deadLetterStore = "SaveSyncDeadLetter", -- DataStore of the dead-letter queue
	cacheUnsentInterval = 12, -- seconds between cache writes of a player with unsent mutations
	cacheAfter = 3, -- seconds a mutation stays unconfirmed before the cache keeps it
	dataStoreReserve = 20, -- DataStore budget left untouched for the game's own use
	random = nil, -- function returning a number in [0, 1) (math.random)
	clock = nil, -- function returning seconds (os.clock)
}

-- Seconds between two writes of one DataStore key by this module. Roblox
-- has no fixed same-key cooldown any more (its limits are the request
-- budget and each key's throughput); the spacing keeps this module's own
-- writes of a key from crowding that throughput.
local KEY_WRITE_SPACING = 1

--------------------------------------------------------------------------
-- Small helpers
--------------------------------------------------------------------------

local function deepCopy(v)
	if type(v) ~= "table" then
		return v
	end
	local out = {}
	for k, x in pairs(v) do
		out[k] = deepCopy(x)
	end
	return out
end

local function deepEqual(a, b)
	if type(a) ~= type(b) then
		return false
	end
	if type(a) ~= "table" then
		return a == b
	end
	for k, v in pairs(a) do
		if not deepEqual(v, b[k]) then
			return false
		end
	end
	for k in pairs(b) do
		if a[k] == nil then
			return false
		end
	end
	return true
end

-- keysOf joins the keys of a list of mutations, to tell two lists apart.
local function keysOf(list)
	local keys = {}
	for _, m in ipairs(list) do
		table.insert(keys, m.key)
	end
	return table.concat(keys, ",")
end

local function idString(n)
	return string.format("%d", n)
end

local ErrorMeta = {}
ErrorMeta.__index = ErrorMeta
ErrorMeta.__tostring = function(e)
	return e.code .. ": " .. e.message
end

-- makeError builds the error value the module returns and passes to
-- signals: {code, message, details, status}. code is the service's error
-- code, or NOT_JOINED / INVALID_ARGUMENT / UNAVAILABLE raised locally.
local function makeError(code, message, details, status)
	return setmetatable({ code = code, message = message, details = details or {}, status = status }, ErrorMeta)
end

-- Signal is a minimal RBXScriptSignal: Connect and Once return a
-- connection with Disconnect, Wait yields until the next Fire and returns
-- its arguments; every handler runs in its own thread. Disconnected
-- handlers are dropped, so connecting and disconnecting does not grow it.
local Signal = {}
Signal.__index = Signal

function Signal.new()
	return setmetatable({ _handlers = {}, _waiters = {} }, Signal)
end

function Signal:Connect(fn)
	assert(type(fn) == "function", "Signal:Connect: pass a function")
	local handler = { fn = fn, connected = true }
	table.insert(self._handlers, handler)
	local connection = { Connected = true }
	function connection:Disconnect()
		handler.connected = false
		self.Connected = false
	end
	return connection
end

function Signal:Once(fn)
	local connection
	connection = self:Connect(function(...)
		connection:Disconnect()
		fn(...)
	end)
	return connection
end

function Signal:Wait()
	local waiter = {}
	table.insert(self._waiters, waiter)
	for _ = 1, 100000000 do
		if waiter.args then
			break
		end
		task.wait()
	end
	return (table.unpack or unpack)(waiter.args, 1, waiter.args.n)
end

function Signal:Fire(...)
	local args = { n = select("#", ...), ... }
	local waiters = self._waiters
	self._waiters = {}
	for _, w in ipairs(waiters) do
		w.args = args
	end
	local handlers = {}
	local kept = {}
	for _, h in ipairs(self._handlers) do
		if h.connected then
			table.insert(handlers, h)
			table.insert(kept, h)
		end
	end
	self._handlers = kept
	for _, h in ipairs(handlers) do
		if h.connected then
			-- Once disconnects before its function runs, so a handler that
			-- fires the signal again does not see itself twice.
			task.spawn(h.fn, ...)
		end
	end
end

-- parseTime reads an RFC 3339 UTC timestamp into seconds since the epoch.
local function parseTime(s)
	if type(s) ~= "string" then
		return nil
	end
	local y, mo, d, h, mi, sec = string.match(s, "^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+%.?%d*)")
	if not y then
		return nil
	end
	y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
	-- days from civil (proleptic Gregorian)
	if mo <= 2 then
		y = y - 1
	end
	local era = math.floor(y / 400)
	local yoe = y - era * 400
	local mp = (mo + 9) % 12
	local doy = math.floor((153 * mp + 2) / 5) + d - 1
	local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
	local days = era * 146097 + doe - 719468
	return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec)
end

--------------------------------------------------------------------------
-- Local application of ops (the optimistic view)
--------------------------------------------------------------------------

local function section(save, name)
	local s = save[name]
	if type(s) ~= "table" then
		s = {}
		save[name] = s
	end
	return s
end

-- addTo adds delta to a balance. Currencies and stats stay at 0, as the
-- service keeps them (game code may do arithmetic on them); items the
-- player no longer holds leave the map, as on the service.
local function addTo(map, key, delta)
	map[key] = (map[key] or 0) + delta
end

local function addItems(save, item, delta)
	local items = section(save, "items")
	local left = (items[item] or 0) + delta
	if left <= 0 then
		items[item] = nil
		left = 0
	else
		items[item] = left
	end
	if delta < 0 then
		-- Slots holding more copies than the player owns are cleared, last
		-- slot first, so the loadout only holds owned items.
		local loadout = section(save, "loadout")
		local slots = {}
		for slot, held in pairs(loadout) do
			if held == item then
				table.insert(slots, slot)
			end
		end
		table.sort(slots)
		for i = #slots, left + 1, -1 do
			loadout[slots[i]] = nil
		end
	end
end

local function collectionAdd(list, element)
	for _, e in ipairs(list) do
		if e == element then
			return
		end
	end
	table.insert(list, element)
	table.sort(list)
end

local function collectionRemove(list, element)
	for i, e in ipairs(list) do
		if e == element then
			table.remove(list, i)
			return
		end
	end
end

-- applyOp changes a save view as the service will, as far as the game can
-- know without the config: a purchase changes nothing until it commits
-- (its price and grants live on the service).
local function applyOp(save, op)
	local kind = op.op
	if kind == "currency.add" then
		addTo(section(save, "currencies"), op.currency, op.amount or 0)
	elseif kind == "xp.add" then
		addTo(section(save, "stats"), "xp", op.amount or 0)
	elseif kind == "stat.add" then
		addTo(section(save, "stats"), op.stat, op.amount or 0)
	elseif kind == "item.grant" then
		addItems(save, op.item, op.count or 0)
	elseif kind == "item.consume" then
		addItems(save, op.item, -(op.count or 0))
	elseif kind == "loadout.set" then
		local loadout = section(save, "loadout")
		if op.item == nil or op.item == "" then
			loadout[op.slot] = nil
		else
			loadout[op.slot] = op.item
		end
	elseif kind == "settings.set" then
		section(save, "settings")[op.key] = op.value
	elseif kind == "collection.add" then
		local cols = section(save, "collections")
		cols[op.collection] = cols[op.collection] or {}
		collectionAdd(cols[op.collection], op.element)
	elseif kind == "collection.remove" then
		local cols = section(save, "collections")
		if cols[op.collection] then
			collectionRemove(cols[op.collection], op.element)
		end
	elseif kind == "inventory.swap" then
		for item, n in pairs(op.remove or {}) do
			addItems(save, item, -n)
		end
		for item, n in pairs(op.add or {}) do
			addItems(save, item, n)
		end
	elseif kind == "save.replace" and type(op.save) == "table" then
		for k in pairs(save) do
			save[k] = nil
		end
		for k, v in pairs(deepCopy(op.save)) do
			save[k] = v
		end
	end
end

-- mockApply applies one op to a save in mock mode with the service's
-- rules, as far as rules (the game config: currencies, stats, items,
-- loadoutSlots, settings, collections, catalog) declares them; without
-- rules balances only stay at or above 0. It returns nil or the refusal.
local function mockApply(save, op, rules, path)
	local function fail(code, message)
		return makeError(code, path .. ": " .. message, { field = path })
	end
	local function isInt(v)
		return type(v) == "number" and v % 1 == 0
	end
	local function bounded(sectionName, defs, id, amount)
		if type(id) ~= "string" or not isInt(amount) then
			return fail("INVALID_ARGUMENT", "needs a " .. sectionName .. " id and an integer amount")
		end
		local def = defs and defs[id]
		if rules and not def then
			return fail("INVALID_ARGUMENT", "the game config declares no " .. sectionName .. " " .. id)
		end
		def = def or {}
		local map = section(save, sectionName == "currency" and "currencies" or "stats")
		local old = map[id] or def.start or 0
		local sum = old + amount
		if sum < (def.floor or 0) then
			return fail("INSUFFICIENT_FUNDS", sectionName .. " " .. id .. " has " .. idString(old) .. ", cannot add " .. idString(amount))
		end
		if def.cap and sum > def.cap then
			return fail("LIMIT_EXCEEDED", sectionName .. " " .. id .. " would pass its cap " .. idString(def.cap))
		end
		map[id] = sum
		return nil
	end
	local function grant(item, count)
		if type(item) ~= "string" or not isInt(count) or count < 1 then
			return fail("INVALID_ARGUMENT", "needs an item id and a positive count")
		end
		local def = rules and rules.items and rules.items[item]
		if rules and not def then
			return fail("INVALID_ARGUMENT", "the game config declares no item " .. item)
		end
		local limit = math.huge
		if def then
			limit = def.stackable and (def.maxStack or math.huge) or 1
		end
		local have = section(save, "items")[item] or 0
		if have + count > limit then
			return fail("LIMIT_EXCEEDED", "holds " .. idString(have) .. " of " .. item .. ", at most " .. tostring(limit))
		end
		addItems(save, item, count)
		return nil
	end
	local function consume(item, count)
		if type(item) ~= "string" or not isInt(count) or count < 1 then
			return fail("INVALID_ARGUMENT", "needs an item id and a positive count")
		end
		local have = section(save, "items")[item] or 0
		if have < count then
			return fail("INSUFFICIENT_FUNDS", "holds " .. idString(have) .. " of " .. item .. ", cannot take " .. idString(count))
		end
		addItems(save, item, -count)
		return nil
	end
	local kind = op.op
	if kind == "currency.add" then
		return bounded("currency", rules and rules.currencies, op.currency, op.amount)
	elseif kind == "xp.add" then
		return bounded("stat", rules and rules.stats, "xp", op.amount)
	elseif kind == "stat.add" then
		return bounded("stat", rules and rules.stats, op.stat, op.amount)
	elseif kind == "item.grant" then
		return grant(op.item, op.count)
	elseif kind == "item.consume" then
		return consume(op.item, op.count)
	elseif kind == "inventory.swap" then
		for item, n in pairs(op.remove or {}) do
			local err = consume(item, n)
			if err then
				return err
			end
		end
		for item, n in pairs(op.add or {}) do
			local err = grant(item, n)
			if err then
				return err
			end
		end
		return nil
	elseif kind == "loadout.set" then
		local slot = rules and rules.loadoutSlots and rules.loadoutSlots[op.slot]
		if rules and not slot then
			return fail("INVALID_ARGUMENT", "the game config declares no loadout slot " .. tostring(op.slot))
		end
		if op.item ~= nil and op.item ~= "" then
			if (section(save, "items")[op.item] or 0) < 1 then
				return fail("INVALID_ARGUMENT", "the player owns no " .. tostring(op.item))
			end
			if slot and slot.items then
				local allowed = false
				for _, id in ipairs(slot.items) do
					allowed = allowed or id == op.item
				end
				if not allowed then
					return fail("INVALID_ARGUMENT", "slot " .. op.slot .. " does not take " .. op.item)
				end
			end
		end
	elseif kind == "settings.set" then
		if rules and not (rules.settings and rules.settings[op.key]) then
			return fail("INVALID_ARGUMENT", "the game config declares no setting " .. tostring(op.key))
		end
	elseif kind == "collection.add" or kind == "collection.remove" then
		local def = rules and rules.collections and rules.collections[op.collection]
		if rules and not def then
			return fail("INVALID_ARGUMENT", "the game config declares no collection " .. tostring(op.collection))
		end
		local list = section(save, "collections")[op.collection] or {}
		if kind == "collection.add" and def and def.maxElements and #list >= def.maxElements then
			return fail("LIMIT_EXCEEDED", "collection " .. op.collection .. " is full")
		end
	elseif kind == "purchase" then
		local sku = rules and rules.catalog and rules.catalog[op.sku]
		if not sku then
			return fail("INVALID_ARGUMENT", "mock mode knows no SKU " .. tostring(op.sku) .. " (give config.mockConfig its catalog)")
		end
		for currency, price in pairs(sku.price or {}) do
			local err = bounded("currency", rules.currencies, currency, -price)
			if err then
				return err
			end
		end
		for i, g in ipairs(sku.grants or {}) do
			local err = mockApply(save, g, rules, path .. ".grants[" .. i .. "]")
			if err then
				return err
			end
		end
		return nil
	elseif kind ~= "save.replace" then
		return fail("INVALID_ARGUMENT", "unknown op " .. tostring(kind))
	end
	applyOp(save, op)
	return nil
end

-- applyChange writes one committed change ({path, old, new}) into a save
-- view. Collection changes name one element ("collections.badges.gold")
-- valued by its dots; nil means absent.
local function applyChange(save, change)
	local path = change.path
	if type(path) ~= "string" then
		return
	end
	local dot = string.find(path, ".", 1, true)
	if not dot then
		return
	end
	local name = string.sub(path, 1, dot - 1)
	local rest = string.sub(path, dot + 1)
	if name == "collections" then
		local dot2 = string.find(rest, ".", 1, true)
		if not dot2 then
			return
		end
		local id = string.sub(rest, 1, dot2 - 1)
		local element = string.sub(rest, dot2 + 1)
		local cols = section(save, "collections")
		cols[id] = cols[id] or {}
		if change.new == nil then
			collectionRemove(cols[id], element)
		else
			collectionAdd(cols[id], element)
		end
		return
	end
	section(save, name)[rest] = change.new
end

--------------------------------------------------------------------------
-- Construction
--------------------------------------------------------------------------

--[[
SaveSync.new(config) starts the module for this game server. config.baseUrl
and config.schemaVersion (the save schema this game code reads; every join
sends it, and the service refuses code older than its schema) are
required; everything else has a default (see DEFAULTS above). It
subscribes to invalidations, starts the write-through and cache loops and,
unless config.bindToClose is false, flushes everything on shutdown.
]]
function SaveSync.new(config)
	assert(type(config) == "table", "SaveSync.new: pass a config table")
	assert(type(config.baseUrl) == "string" and config.baseUrl ~= "", "SaveSync.new: config.baseUrl is required")
	assert(
		type(config.schemaVersion) == "number" and config.schemaVersion >= 1 and config.schemaVersion % 1 == 0,
		"SaveSync.new: config.schemaVersion is required: the save schema this game code reads (a positive integer)"
	)
	local cfg = {}
	for k, v in pairs(DEFAULTS) do
		cfg[k] = v
	end
	for k, v in pairs(config) do
		cfg[k] = v
	end
	assert(
		cfg.mode == "auto" or cfg.mode == "live" or cfg.mode == "mock",
		'SaveSync.new: config.mode must be "auto", "live" or "mock"'
	)
	cfg.baseUrl = string.gsub(cfg.baseUrl, "/+$", "")
	cfg.placeId = cfg.placeId or game.PlaceId

	local self = setmetatable({}, SaveSync)
	self._config = cfg
	self._http = game:GetService("HttpService")
	self._clock = cfg.clock or os.clock
	self._random = cfg.random or math.random
	local okRun, runService = pcall(game.GetService, game, "RunService")
	self._studio = okRun and runService:IsStudio() or false
	cfg.jobId = cfg.jobId or game.JobId
	if cfg.jobId == nil or cfg.jobId == "" then
		-- Studio sessions have no JobId; each gets its own, so two
		-- developers testing at once do not share one server's leases.
		cfg.jobId = "studio-" .. self._http:GenerateGUID(false)
	end
	local okSecret, secret = pcall(self._http.GetSecret, self._http, cfg.secretName)
	-- Mode: mock in Studio unless config.mode is "live" (so Studio never
	-- writes production saves by accident), live on Roblox servers.
	self.Mode = cfg.mode
	if self.Mode == "auto" then
		self.Mode = self._studio and "mock" or "live"
	end
	if self.Mode == "live" and not okSecret and self._studio then
		warn("SaveSync: the Secret " .. cfg.secretName .. " is not available in Studio (set it in Game Settings → Security → Secrets for local testing); using mock mode")
		self.Mode = "mock"
	end
	self._unconfigured = nil
	if self.Mode == "live" and okSecret then
		self._auth = secret:AddPrefix("Bearer ")
	elseif self.Mode == "live" then
		-- A live server without the Secret cannot save: say so loudly and
		-- refuse joins rather than let players play progress that is lost.
		self._unconfigured = makeError(
			"NOT_CONFIGURED",
			"the Secret " .. cfg.secretName .. " is not set for this experience (Creator Dashboard → Secrets): " .. tostring(secret),
			{ reason = "SECRET_MISSING" }
		)
		warn("SaveSync: " .. tostring(self._unconfigured))
	end
	self._mock = { saves = {} } -- mock mode's saves, by user id
	if self.Mode ~= "mock" then
		self._dataStores = game:GetService("DataStoreService")
		self._messaging = game:GetService("MessagingService")
		self._cache = self._dataStores:GetDataStore(cfg.cacheStore)
		self._deadLetters = self._dataStores:GetDataStore(cfg.deadLetterStore)
	end
	self._players = {} -- userId -> player state
	self._linkFailures = {} -- userId -> clock times of failed link-code tries
	self._joining = {} -- userId -> true while a Join runs
	self._leftDuringJoin = {} -- userId -> true when Leave ran while a Join was running
	self._deadLetterOut = {} -- userId -> entries waiting for their DataStore write
	self._deadLetterSettled = {} -- userId -> keys replayed from the DLQ and now settled
	self._obsoleteCacheKeys = {} -- cache keys to remove once their spacing allows
	self._lastKeyWrite = {} -- store name .. "/" .. key -> clock of its last write
	self._writeBackoff = {} -- store name .. "/" .. key -> {failures, untilAt} after failed writes
	self._sent = { first = 1, last = 0 } -- clock times of the requests of the last 60 s
	self._httpBlockedUntil = -math.huge -- HttpService refuses requests until then
	self._subscribed = false
	self._cursor = ""
	self._stopped = false
	self._closing = false

	--[[ Signals:
	Changed(player, save, info): the player's save view changed; info.reason is
	  "mutate", "commit", "rollback" or "refetch".
	MutationCommitted(player, mutationId, outcome): the service applied a mutation.
	MutationRefused(player, mutationId, err): the service refused a mutation;
	  its optimistic change was rolled back.
	MutationDeadLettered(player, mutationId, err): a mutation failed maxAttempts
	  times; it is kept in the dead-letter DataStore and replayed on the player's
	  next join (its change stays in the view meanwhile).
	SessionLost(player, err): another server took the player's session over.
	]]
	self.Changed = Signal.new()
	self.MutationCommitted = Signal.new()
	self.MutationRefused = Signal.new()
	self.MutationDeadLettered = Signal.new()
	self.SessionLost = Signal.new()

	self.Stats = { requests = 0, batches = 0, retries = 0, refetches = 0, deadLettered = 0, faults = 0 }

	if self.Mode == "live" then
		task.spawn(function()
			self:_subscribe()
		end)
		task.spawn(function()
			self:_serviceLoop()
		end)
		task.spawn(function()
			self:_cacheLoop()
		end)
		if cfg.longPoll then
			task.spawn(function()
				self:_pollLoop()
			end)
		end
	end
	if cfg.bindToClose then
		game:BindToClose(function()
			self:Close()
		end)
	end
	return self
end

--------------------------------------------------------------------------
-- HTTP
--------------------------------------------------------------------------

-- HTTP_STALL is how long Roblox's HttpService refuses requests once a
-- server went over its limit ("Number of requests exceeded limit").
local HTTP_STALL = 30

-- _takeToken waits for the module's HTTP budget: at most
-- requestsPerMinute requests in any 60 seconds (Roblox counts 500 a
-- minute per server in a rolling window), and none while HttpService
-- stalls. It returns false when the wait would outlast deadline (a clock
-- time; nil: no deadline).
function SaveSync:_takeToken(deadline)
	local limit = self._config.requestsPerMinute
	local sent = self._sent
	for _ = 1, 100000 do
		local now = self._clock()
		local wait
		if now < self._httpBlockedUntil then
			wait = self._httpBlockedUntil - now
		else
			while sent.first <= sent.last and sent[sent.first] <= now - 60 do
				sent[sent.first] = nil
				sent.first = sent.first + 1
			end
			if sent.last - sent.first + 1 < limit then
				sent.last = sent.last + 1
				sent[sent.last] = now
				return true
			end
			wait = sent[sent.first] + 60 - now + 0.001
		end
		if deadline and now + wait > deadline then
			return false
		end
		task.wait(wait)
	end
	return false
end

-- _request sends one request to the service and returns {ok, status, body,
-- headers} or {transport = true, err} when no answer came; throttled is
-- set when the request was never sent (the HTTP budget, until deadline).
function SaveSync:_request(method, path, body, extraHeaders, deadline)
	if self._closing then
		deadline = math.min(deadline or math.huge, self._closeBy or math.huge)
	end
	if not self:_takeToken(deadline) then
		return { transport = true, throttled = true, err = makeError("UNAVAILABLE", "the HTTP budget has no room before the deadline") }
	end
	local headers = {
		["Authorization"] = self._auth,
		["Roblox-Job-Id"] = self._config.jobId,
	}
	if body ~= nil then
		headers["Content-Type"] = "application/json"
	end
	if self._config.schemaVersion then
		headers["Savesync-Schema-Version"] = idString(self._config.schemaVersion)
	end
	if extraHeaders then
		for k, v in pairs(extraHeaders) do
			headers[k] = v
		end
	end
	local request = { Url = self._config.baseUrl .. path, Method = method, Headers = headers, Body = body }
	self.Stats.requests = self.Stats.requests + 1
	local ok, response = pcall(self._http.RequestAsync, self._http, request)
	if not ok then
		local message = tostring(response)
		if string.find(message, "Http requests are not enabled", 1, true) then
			-- Not a network error: nothing is sent until a setting changes.
			return {
				disabled = true,
				err = makeError(
					"NOT_CONFIGURED",
					"HTTP requests are off for this experience: turn on Game Settings → Security → Allow HTTP Requests",
					{ reason = "HTTP_DISABLED" }
				),
			}
		end
		if string.find(message, "Number of requests exceeded limit", 1, true) then
			-- The server (the game's own requests too) went over Roblox's
			-- limit: every request stalls for about 30 s, so none is sent
			-- before then. The request never left: it is not an attempt.
			self._httpBlockedUntil = self._clock() + HTTP_STALL
			return { transport = true, throttled = true, err = makeError("UNAVAILABLE", "HttpService: " .. message) }
		end
		return { transport = true, err = makeError("UNAVAILABLE", "the request did not complete: " .. message) }
	end
	local decoded = nil
	if type(response.Body) == "string" and #response.Body > 0 then
		local okJson, value = pcall(self._http.JSONDecode, self._http, response.Body)
		if okJson then
			decoded = value
		end
	end
	local status = response.StatusCode
	if type(status) ~= "number" then
		return { transport = true, err = makeError("UNAVAILABLE", "the answer had no status code") }
	end
	local ok = status >= 200 and status < 300
	if ok and type(decoded) ~= "table" then
		-- A success whose body is not JSON (a proxy's page, a cut answer):
		-- whether the request took effect is unknown, so it is retried
		-- under the same idempotency key like a lost answer.
		return {
			transport = true,
			status = status,
			err = makeError("UNAVAILABLE", "the service answered HTTP " .. idString(status) .. " with a body that is not JSON", nil, status),
		}
	end
	return { ok = ok, status = status, body = decoded, headers = response.Headers or {} }
end

-- unreadable is the failed answer standing for a success whose JSON lacks
-- what the route promises; it is retried like a lost answer.
local function unreadable(what)
	return { transport = true, err = makeError("UNAVAILABLE", "the service's answer could not be read: " .. what) }
end

-- asTable returns v when it is a table, otherwise nil.
local function asTable(v)
	if type(v) == "table" then
		return v
	end
	return nil
end

-- asNumber returns v when it is a number, otherwise fallback.
local function asNumber(v, fallback)
	if type(v) == "number" then
		return v
	end
	return fallback
end

-- errorOf turns a failed answer into an error value.
-- errorFrom reads an error object of the service's answers
-- ({code, message, details}), whatever shape it arrived in.
local function errorFrom(e, status)
	e = asTable(e) or {}
	local code = type(e.code) == "string" and e.code or "INTERNAL"
	local message = type(e.message) == "string" and e.message or ""
	return makeError(code, message, asTable(e.details), status)
end

local function errorOf(res)
	if res.transport or res.disabled then
		return res.err
	end
	if type(res.body) == "table" and type(res.body.error) == "table" then
		return errorFrom(res.body.error, res.status)
	end
	if type(res.status) == "number" and res.status >= 500 then
		return makeError("UNAVAILABLE", "the service answered HTTP " .. idString(res.status), nil, res.status)
	end
	return makeError("INTERNAL", "the service answered HTTP " .. tostring(res.status), nil, res.status)
end

-- retryable reports whether a failed call may succeed if sent again with
-- the same idempotency key: no answer, throttling, server faults, and an
-- unrecognised key (a rotation in progress). Everything else is a refusal.
local function retryable(res)
	if res.disabled then
		return false
	end
	if res.transport then
		return true
	end
	local s = res.status
	if type(s) ~= "number" then
		return true
	end
	return s == 401 or s == 408 or s == 429 or s >= 500
end

-- _backoff is the wait after a failed attempt: exponential, with jitter
-- (half fixed, half random) so servers that failed together spread out.
function SaveSync:_backoff(attempt)
	local ceiling = math.min(self._config.backoffMax, self._config.backoffBase * 2 ^ (attempt - 1))
	if self._closing then
		ceiling = math.min(ceiling, 1)
	end
	return ceiling / 2 + ceiling / 2 * self._random()
end

--------------------------------------------------------------------------
-- Public API
--------------------------------------------------------------------------

--[[
SaveSync:Join(player, options) loads the player's save and takes the session.
It yields until the save is ready and returns a copy of it, or nil and an
error. When another server holds the player (a teleport whose source is
still leaving) it waits up to config.sessionHeldWait for the release, then
takes the session over (config.stealAfterWait; options.steal = true takes
it at once). Errors: SESSION_HELD (only with stealAfterWait = false:
details.jobId, details.expiresAt), SAVE_MIGRATION_FAILED (details.step,
details.field: keep the player on a loading screen), SCHEMA_TOO_NEW (this
server's code is older than the save), UNAVAILABLE (the service could not
be reached), NOT_JOINED (the player left before the join completed; any
lease taken is released), INTERNAL (a fault inside the module).
]]
function SaveSync:Join(player, options)
	local userId = player.UserId
	if self.Mode == "mock" then
		return self:_mockJoin(player)
	end
	if self._unconfigured then
		return nil, self._unconfigured
	end
	if type(userId) ~= "number" or userId <= 0 then
		return nil,
			makeError(
				"INVALID_ARGUMENT",
				"user id " .. tostring(userId) .. " is not a Roblox account (Studio's test players have negative ids): test in mock mode, the default in Studio, or in a Team Test with real accounts"
			)
	end
	for _ = 1, 600 do
		if not self._joining[userId] then
			break
		end
		task.wait(0.1)
	end
	local existing = self._players[userId]
	if existing and not existing.leaving then
		return deepCopy(existing.view)
	end
	self._joining[userId] = true
	self._leftDuringJoin[userId] = nil
	if existing then
		-- The player rejoined while their previous Leave still runs: let it
		-- release the old session first.
		for _ = 1, 100000 do
			if existing.left then
				break
			end
			task.wait(0.1)
		end
	end
	local ok, save, err = pcall(self._join, self, player, options or {})
	self._joining[userId] = nil
	self._leftDuringJoin[userId] = nil
	if not ok then
		-- A fault inside the module must not leave the player marked as
		-- joining (every later Join would wait for it) nor half held.
		warn("SaveSync: Join of " .. idString(userId) .. " failed: " .. tostring(save))
		local st = self._players[userId]
		if st and st ~= existing then
			task.spawn(function()
				self:_leave(userId, 0)
			end)
		end
		return nil, makeError("INTERNAL", "the join failed inside SaveSync: " .. tostring(save))
	end
	return save, err
end

local function leftDuringJoinError()
	return makeError("NOT_JOINED", "the player left before the join completed")
end

function SaveSync:_join(player, options)
	local cfg = self._config
	local userId = player.UserId
	local body = self._http:JSONEncode({
		userId = userId,
		jobId = cfg.jobId,
		placeId = cfg.placeId,
		schemaVersion = cfg.schemaVersion,
		steal = options.steal == true,
	})
	local heldUntil = self._clock() + cfg.sessionHeldWait
	local attempt = 0
	local heldWaits = 0
	local stealing = options.steal == true
	local res
	for _ = 1, 200 do
		res = self:_request("POST", "/v1/sessions", body)
		if res.disabled and self._studio then
			warn("SaveSync: " .. tostring(res.err) .. "; using mock mode in this Studio session")
			self.Mode = "mock"
			return self:_mockJoin(player)
		end
		if res.ok then
			local b = res.body
			if type(b.player) == "table" and type(b.session) == "table" and type(b.session.id) == "string" then
				break
			end
			res = unreadable("the join answer has no player or session")
		end
		local err = errorOf(res)
		if not retryable(res) then
			attempt = 0
		elseif not res.throttled then
			attempt = attempt + 1
		end
		if err.code == "SESSION_HELD" and self._clock() < heldUntil then
			-- Another server still holds the player (a teleport whose source
			-- is still leaving): ask it to release the player now, as
			-- ProfileStore does, and wait for the release, which may take
			-- its leaveTimeout and releaseTimeout.
			if heldWaits % 10 == 0 then
				local holder = type(err.details) == "table" and err.details.jobId or nil
				task.spawn(function()
					self:_askRelease(userId, holder)
				end)
			end
			heldWaits = heldWaits + 1
			task.wait(math.min(2, 0.5 * heldWaits, math.max(0, heldUntil - self._clock())))
			-- Nothing was taken: a player who left meanwhile needs no release.
			if self._leftDuringJoin[userId] then
				return nil, leftDuringJoinError()
			end
		elseif err.code == "SESSION_HELD" and cfg.stealAfterWait and not stealing then
			-- The holder did not release in time: it crashed or is stuck.
			-- Take the session over; whatever it still writes applies (deltas
			-- commute) and its next renewal tells it the player is gone.
			stealing = true
			body = self._http:JSONEncode({
				userId = userId,
				jobId = cfg.jobId,
				placeId = cfg.placeId,
				schemaVersion = cfg.schemaVersion,
				steal = true,
			})
		elseif retryable(res) and attempt < cfg.joinAttempts then
			-- The failed attempt may have taken the lease (its answer lost):
			-- a player who left meanwhile is handled after the retry, which
			-- returns that lease so it can be released below.
			task.wait(self:_backoff(attempt))
		else
			return nil, err
		end
	end
	if not res.ok then
		return nil, errorOf(res)
	end
	local joined = res.body
	local lease = joined.session or {}
	if self._leftDuringJoin[userId] then
		-- The player quit while the join request ran: give the lease back
		-- rather than keep (and renew) a session nobody plays.
		self:_releaseSession(lease.id, self._clock() + cfg.releaseTimeout)
		return nil, leftDuringJoinError()
	end
	local ttl = 90
	local acquired, expires = parseTime(lease.acquiredAt), parseTime(lease.expiresAt)
	if acquired and expires and expires > acquired then
		ttl = expires - acquired
	end
	local st = {
		player = player,
		userId = userId,
		session = lease,
		renewEvery = ttl / 3,
		renewAt = self._clock() + ttl / 3,
		version = asNumber(joined.player.version, 0),
		schemaVersion = joined.player.schemaVersion,
		confirmed = asTable(joined.player.save) or {},
		view = nil,
		pending = {},
		parked = {},
		refetchTarget = 0,
		cachedKeys = "", -- the keys of the mutations the entry holds, joined
		cacheWritten = false, -- the entry exists (written by this session)
		leaving = false,
	}
	st.view = deepCopy(st.confirmed)
	self._players[userId] = st
	local replaced = asTable(joined.replaced)
	self:_recover(st, replaced and type(replaced.id) == "string" and replaced.id or nil)
	if cfg.import and st.version == 0 then
		local imported, importErr = self:_import(st)
		if not imported then
			-- Keep nothing of a player whose old save could not be brought
			-- over: a later join tries again (nothing was written).
			if self._players[userId] == st then
				self._players[userId] = nil
			end
			st.left = true
			self:_releaseSession(st.session.id, self._clock() + cfg.releaseTimeout)
			return nil, importErr
		end
	end
	local deadline = self._clock() + cfg.joinReplayTimeout
	for _ = 1, 10000 do
		if not self:_hasReplaying(st) or self._clock() >= deadline then
			break
		end
		task.wait(cfg.flushInterval)
	end
	if st.leaving or self._leftDuringJoin[userId] then
		-- The player quit during the replay wait; their Leave runs.
		return nil, leftDuringJoinError()
	end
	return deepCopy(st.view)
end

-- _import brings a player's save over from the studio's own DataStore on
-- their first join (service version 0): config.import names the
-- DataStore, the key and the transform to a savesync save. It is written
-- as one save.replace expecting version 0 under the key "import:<userId>",
-- so the ledger has one import entry and two servers that race import it
-- once. It returns true (imported, nothing to import, or another server
-- imported first) or false and IMPORT_FAILED.
function SaveSync:_import(st)
	local imp = self._config.import
	local userId = st.userId
	local function failed(reason, message, extra)
		local details = { reason = reason }
		for k, v in pairs(extra or {}) do
			details[k] = v
		end
		warn("SaveSync: import of " .. idString(userId) .. " failed: " .. message)
		return false, makeError("IMPORT_FAILED", message, details)
	end
	local key
	if type(imp.key) == "function" then
		key = imp.key(userId)
	else
		key = tostring(imp.key or "") .. idString(userId)
	end
	local store = self._dataStores:GetDataStore(imp.dataStore, imp.scope)
	local value, okGet = nil, false
	for attempt = 1, 3 do
		if self:_canRead() then
			okGet, value = pcall(store.GetAsync, store, key)
			if okGet then
				break
			end
		end
		task.wait(self:_backoff(attempt))
	end
	if not okGet then
		return failed("READ_FAILED", "the old save " .. tostring(imp.dataStore) .. "/" .. tostring(key) .. " could not be read: " .. tostring(value), { key = key })
	end
	if imp.profileStore and type(value) == "table" then
		value = value.Data -- a ProfileStore (or ProfileService) profile
	end
	if value == nil then
		return true
	end
	local okT, save = pcall(imp.transform, deepCopy(value), userId)
	if not okT or type(save) ~= "table" then
		return failed("TRANSFORM_FAILED", "config.import.transform did not return a save: " .. tostring(save), { key = key })
	end
	local entry, err = self:_enqueue(st.player, { { op = "save.replace", save = save } }, { idempotencyKey = "import:" .. idString(userId) })
	if not entry then
		return failed("REFUSED", tostring(err), { key = key })
	end
	entry.mutation.expectedVersion = 0
	entry.mutation.reason = "import of " .. tostring(imp.dataStore) .. "/" .. tostring(key)
	local deadline = self._clock() + self._config.mutateTimeout
	for _ = 1, 1000000 do
		if entry.result or self._clock() >= deadline then
			break
		end
		task.wait(self._config.flushInterval / 2)
	end
	local result = entry.result
	if result and result.ok then
		return true
	end
	local code = result and result.value.code or "UNAVAILABLE"
	if code == "VERSION_CONFLICT" or code == "IDEMPOTENCY_KEY_REUSED" then
		-- Another server imported first: its save is the player's now.
		st.refetchTarget = math.max(st.refetchTarget, st.version + 1)
		return true
	end
	return failed("REFUSED", "the service did not take the imported save: " .. tostring(result and result.value or "no answer"), {
		key = key,
		code = code,
		field = result and type(result.value.details) == "table" and result.value.details.field or nil,
	})
end

-- Get returns a copy of the player's save as the game should show it:
-- the service's last confirmed save with this server's unconfirmed
-- mutations applied. nil when the player has not joined.
function SaveSync:Get(player)
	local st = self._players[player.UserId]
	if not st then
		return nil
	end
	return deepCopy(st.view)
end

-- Version returns the service version of the player's confirmed save.
function SaveSync:Version(player)
	local st = self._players[player.UserId]
	return st and st.version
end

--[[
SaveSync:Mutate(player, ops, options) applies ops to the player's save at
once and writes them through in the background; it never yields. ops is a
list of the service's ops ({op = "currency.add", currency = "coins", amount
= 25}, {op = "item.grant", item = "potion", count = 2}, ...) or one op. It
returns the mutation id (its idempotency key), or nil and an error
(NOT_JOINED, also once Leave has started; SESSION_LOST; INVALID_ARGUMENT,
also written to the output with warn). options.idempotencyKey sets the key
(1 to 128 characters) instead of a new GUID: the same key sends the same
mutation once, from any server of the universe. A refusal rolls the change
back and fires MutationRefused.
]]
function SaveSync:Mutate(player, ops, options)
	local entry, err = self:_enqueue(player, ops, options)
	if not entry then
		return nil, err
	end
	return entry.key
end

--[[
SaveSync:MutateAsync(player, ops, options) is Mutate that yields until the
service committed or refused the mutation: it returns true and the outcome
({version, changes, ...}) or false and an error (the service's refusal, e.g.
INSUFFICIENT_FUNDS; UNAVAILABLE when every attempt failed, and the mutation
is dead-lettered and written on the player's next join; the errors of
Mutate). With options.idempotencyKey derived from something Roblox delivers
more than once (a receipt's PurchaseId), a second delivery, on this or
another server, answers the first one's outcome instead of applying it
again. See README.md, "Developer products".
]]
function SaveSync:MutateAsync(player, ops, options)
	local entry, err = self:_enqueue(player, ops, options)
	if not entry then
		return false, err
	end
	local timeout = (options and options.timeout) or self._config.mutateTimeout
	local deadline = self._clock() + timeout
	for _ = 1, 1000000 do
		if entry.result then
			return entry.result.ok, entry.result.value
		end
		if self._clock() >= deadline then
			break
		end
		task.wait(self._config.flushInterval / 2)
	end
	return false, makeError("UNAVAILABLE", "the mutation was not confirmed within " .. tostring(timeout) .. " s; it is still queued under its key")
end

-- _enqueue checks and queues a mutation; it returns the queued entry (an
-- entry already queued under the same caller key), or nil and an error.
function SaveSync:_enqueue(player, ops, options)
	if self.Mode == "mock" then
		return self:_mockEnqueue(player, ops, options)
	end
	local userId = type(player) == "table" and player.UserId or nil
	local st = userId and self._players[userId]
	if st and st.lost then
		return nil, makeError("SESSION_LOST", "another server holds this player's session now; the change was not made")
	end
	if not st or st.leaving or st.left then
		return nil, makeError("NOT_JOINED", "Join the player before mutating their save")
	end
	if type(ops) == "table" and type(ops.op) == "string" then
		ops = { ops } -- one op given on its own
	end
	local function invalid(message)
		warn("SaveSync: Mutate refused: " .. message)
		return nil, makeError("INVALID_ARGUMENT", message)
	end
	if type(ops) ~= "table" or #ops == 0 then
		return invalid("ops must be an op ({op = \"currency.add\", ...}) or a non-empty list of ops")
	end
	local needsHead = false
	for i, op in ipairs(ops) do
		if type(op) ~= "table" or type(op.op) ~= "string" then
			return invalid("ops[" .. i .. "] must be a table with an op field")
		end
		if NEEDS_HEAD[op.op] then
			needsHead = true
		end
	end
	options = options or {}
	local key = options.idempotencyKey
	if key ~= nil then
		if type(key) ~= "string" or #key < 1 or #key > 128 then
			return invalid("options.idempotencyKey must be a string of 1 to 128 characters")
		end
		for _, e in ipairs(st.pending) do
			if e.key == key then
				-- Delivered again while the first is still queued here.
				return e
			end
		end
	else
		key = self._http:GenerateGUID(false)
	end
	local entry = {
		key = key,
		mutation = { ops = deepCopy(ops) },
		attempts = 0,
		nextAt = 0,
		needsHead = needsHead,
		source = "live",
		madeAt = self._clock(),
	}
	table.insert(st.pending, entry)
	for _, op in ipairs(entry.mutation.ops) do
		applyOp(st.view, op)
	end
	self.Changed:Fire(st.player, deepCopy(st.view), { reason = "mutate", mutationId = entry.key })
	return entry
end

--[[
SaveSync:Leave(player) waits (up to config.leaveTimeout) for the player's
mutations to be written, dead-letters any that could not be, and releases
the session. It yields; it returns true when the lease was released.
]]
function SaveSync:Leave(player)
	local cfg = self._config
	return self:_leave(player.UserId, cfg.leaveTimeout, self._clock() + cfg.leaveTimeout + cfg.releaseTimeout)
end

-- _leave waits up to timeout seconds for the player's queue, then releases
-- the session, retrying until releaseBy (a clock time).
function SaveSync:_leave(userId, timeout, releaseBy)
	if self.Mode == "mock" then
		return self:_mockLeave(userId)
	end
	if self._joining[userId] then
		-- Join is still running: it sees this mark and releases the
		-- session it gets instead of keeping it.
		self._leftDuringJoin[userId] = true
	end
	local st = self._players[userId]
	if not st then
		return true
	end
	if st.leaving then
		for _ = 1, 10000 do
			if st.left then
				break
			end
			task.wait(0.1)
		end
		return st.released == true
	end
	st.leaving = true
	local deadline = self._clock() + timeout
	for _ = 1, 100000 do
		if #st.pending == 0 or self._clock() >= deadline then
			break
		end
		task.wait(self._config.flushInterval)
	end
	while #st.pending > 0 do
		self:_park(st, st.pending[1], makeError("UNAVAILABLE", "the mutation was not written before the player left"))
	end
	if not self:_writeDeadLetters(userId, true) then
		-- The dead-letter queue could not be written now (the cache loop, or
		-- Close, tries again): keep the mutations in this session's entry
		-- too, which the next join reads wherever it happens.
		local slot = self:_slot(self._cache, self:_cacheKey(st))
		self:_waitSpacing(slot)
		self._writeBackoff[slot] = nil
		self:_writeCache(st)
	end
	if st.lost then
		-- Another server holds the session: nothing of it is ours to release.
		st.released = false
	else
		local res = self:_releaseSession(st.session.id, releaseBy or (self._clock() + self._config.releaseTimeout))
		st.released = res.ok and res.body.released == true
	end
	st.left = true
	if self._players[userId] == st then
		self._players[userId] = nil
	end
	if #st.parked == 0 then
		task.spawn(function()
			self:_dropSession(st)
		end)
	end
	return st.released
end

-- _releaseSession sends the leave of a session under one Idempotency-Key,
-- retried with backoff until deadline (a clock time) while no answer came
-- or the service was unavailable: a retry answers the first leave's
-- answer. Until it lands the player cannot join another server without
-- a takeover, so it is worth many attempts.
function SaveSync:_releaseSession(sessionId, deadline)
	local path = "/v1/sessions/" .. self._http:UrlEncode(sessionId or "") .. "/leave"
	local headers = { ["Idempotency-Key"] = self._http:GenerateGUID(false) }
	local res
	for attempt = 1, 100 do
		res = self:_request("POST", path, "{}", headers, deadline)
		if res.ok or not retryable(res) then
			break
		end
		local wait = self:_backoff(attempt)
		if self._clock() + wait > deadline then
			break
		end
		task.wait(wait)
	end
	return res
end

-- LINK_CODE_ALPHABET and LINK_CODE_LENGTH are the companion's codes: 8
-- characters without the look-alikes 0, O, 1, I and L.
local LINK_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
local LINK_CODE_LENGTH = 8

-- LINK_MESSAGES are what to tell a player whose code did not work, by the
-- error's reason or code.
local LINK_MESSAGES = {
	LINK_CODE_UNKNOWN = "That code does not exist. Check the code shown in the companion app.",
	LINK_CODE_EXPIRED = "That code has expired. Ask the companion app for a new one.",
	LINK_CODE_USED = "That code was already used. Ask the companion app for a new one.",
	ALREADY_LINKED = "That companion account is already linked to another Roblox account.",
	PLAYER_LINKED_ELSEWHERE = "Your Roblox account is already linked to another companion account. Unlink it there first.",
	INVALID_ARGUMENT = "A code has 8 letters and digits. Check what you typed.",
	RATE_LIMITED = "Too many tries. Wait a little, then try again.",
}

--[[
SaveSync:RedeemLinkCodeAsync(player, code) links the player's Roblox account
to the companion account that showed code (the player typed it in game). It
yields; it returns true and {linkedAt} or false and an error whose
playerMessage is a sentence to show the player: NOT_FOUND (details.reason
LINK_CODE_UNKNOWN, LINK_CODE_EXPIRED or LINK_CODE_USED), PERMISSION_DENIED
(ALREADY_LINKED, PLAYER_LINKED_ELSEWHERE), INVALID_ARGUMENT (not 8
characters of the code alphabet; nothing is sent), RATE_LIMITED (more than
config.linkAttempts failed tries within config.linkAttemptWindow seconds for
this player, checked here before any request, or the service's own
limits: details.retryAfter), UNAVAILABLE. Codes may be typed in any case,
with spaces or dashes. Call it from a RemoteFunction handler on the server.
]]
function SaveSync:RedeemLinkCodeAsync(player, code)
	local cfg = self._config
	local userId = type(player) == "table" and player.UserId or nil
	local function refuse(err)
		local reason = type(err.details) == "table" and err.details.reason or nil
		err.playerMessage = LINK_MESSAGES[reason] or LINK_MESSAGES[err.code] or "Linking did not work this time. Try again in a minute."
		return false, err
	end
	if self.Mode == "mock" then
		return refuse(makeError("UNAVAILABLE", "linking needs the live service; this session runs in mock mode", { reason = "MOCK_MODE" }))
	end
	if self._unconfigured then
		return refuse(self._unconfigured)
	end
	if type(userId) ~= "number" or userId <= 0 then
		return refuse(makeError("INVALID_ARGUMENT", "only a Roblox account can be linked"))
	end
	-- Failed tries per player, kept here so a client cannot spend the
	-- server's budget or guess codes: the service limits them too.
	local now = self._clock()
	local tries = self._linkFailures[userId] or {}
	local recent = {}
	for _, at in ipairs(tries) do
		if now - at < cfg.linkAttemptWindow then
			table.insert(recent, at)
		end
	end
	self._linkFailures[userId] = recent
	if #recent >= cfg.linkAttempts then
		local wait = math.ceil(recent[1] + cfg.linkAttemptWindow - now)
		return refuse(makeError("RATE_LIMITED", "too many wrong link codes from this player; try again in " .. wait .. " s", { retryAfter = wait }))
	end
	local normalized = string.upper(type(code) == "string" and code or "")
	normalized = string.gsub(normalized, "[%s%-]", "")
	local valid = #normalized == LINK_CODE_LENGTH
	for i = 1, #normalized do
		if not string.find(LINK_CODE_ALPHABET, string.sub(normalized, i, i), 1, true) then
			valid = false
		end
	end
	if not valid then
		table.insert(recent, now)
		return refuse(makeError("INVALID_ARGUMENT", "a link code has 8 characters from " .. LINK_CODE_ALPHABET, { field = "code" }))
	end
	local path = "/v1/link-codes/" .. normalized .. "/redeem"
	local body = self._http:JSONEncode({ userId = userId })
	local res
	for attempt = 1, cfg.joinAttempts do
		res = self:_request("POST", path, body)
		-- A redemption of the same code by the same player answers the same
		-- link, so one whose answer was lost may be sent again.
		if res.ok or not retryable(res) or res.status == 429 or attempt == cfg.joinAttempts then
			break
		end
		task.wait(self:_backoff(attempt))
	end
	if res.ok and res.body.linked == true then
		self._linkFailures[userId] = nil
		return true, { linkedAt = res.body.linkedAt }
	end
	local err = res.ok and makeError("UNAVAILABLE", "the service's answer could not be read") or errorOf(res)
	if err.code == "NOT_FOUND" or err.code == "INVALID_ARGUMENT" then
		table.insert(recent, self._clock())
	end
	if err.code == "RATE_LIMITED" and type(res.headers) == "table" then
		err.details.retryAfter = tonumber(res.headers["retry-after"]) or err.details.retryAfter
	end
	return refuse(err)
end

--[[
SaveSync:Close() flushes every player's mutations and leaves every player
within config.closeBudget seconds; what cannot be written by then is
dead-lettered. new() binds it to game:BindToClose.
]]
function SaveSync:Close()
	if self._closing then
		return
	end
	self._closing = true
	local cfg = self._config
	local started = self._clock()
	self._closeBy = started + cfg.closeBudget
	local flushUntil = started + cfg.closeBudget * 0.6
	for _, st in pairs(self._players) do
		for _, e in ipairs(st.pending) do
			e.nextAt = math.min(e.nextAt, started)
		end
	end
	for _ = 1, 100000 do
		local busy = false
		for _, st in pairs(self._players) do
			if #st.pending > 0 then
				busy = true
			end
		end
		if not busy or self._clock() >= flushUntil then
			break
		end
		task.wait(cfg.flushInterval)
	end
	local remaining = 0
	local leaveTimeout = math.max(0, started + cfg.closeBudget * 0.6 - self._clock())
	local closeBy = started + cfg.closeBudget
	local users = {}
	for userId in pairs(self._players) do
		table.insert(users, userId)
	end
	for _, userId in ipairs(users) do
		remaining = remaining + 1
		task.spawn(function()
			self:_leave(userId, leaveTimeout, closeBy - 1)
			remaining = remaining - 1
		end)
	end
	for _ = 1, 100000 do
		if remaining <= 0 or self._clock() >= closeBy then
			break
		end
		task.wait(0.1)
	end
	-- Dead-letter writes that failed are tried again until the budget
	-- ends: after that the server is gone, and with it what only memory
	-- held. (Each leave also kept them in its session's cache entry.)
	for _ = 1, 100000 do
		local users = {}
		for userId, out in pairs(self._deadLetterOut) do
			if #out > 0 then
				table.insert(users, userId)
			end
		end
		if #users == 0 or self._clock() + 1 >= closeBy then
			break
		end
		for _, userId in ipairs(users) do
			if self._clock() + 1 < closeBy then
				self:_writeDeadLetters(userId, true)
			end
		end
		task.wait(0.5)
	end
	self._stopped = true
end

--------------------------------------------------------------------------
-- Write-through
--------------------------------------------------------------------------

-- _serviceLoop is the one thread that writes mutations (batched across
-- players), refetches invalidated saves and renews leases, in turn, so
-- every HTTP request passes the same budget.
function SaveSync:_serviceLoop()
	for _ = 1, 100000000 do
		if self._stopped then
			return
		end
		local ok, sent = pcall(self._servicePass, self)
		if not ok then
			-- One fault must not stop every save on the server.
			self:_fault("service loop", sent)
			task.wait(1)
		elseif not sent or not self._closing then
			-- Mutations gather for flushInterval after each request, so a
			-- busy server sends batches, not one request per mutation.
			task.wait(self._config.flushInterval)
		end
	end
end

-- _servicePass sends what is due once; it reports whether it sent mutations.
function SaveSync:_servicePass()
	local batch = self:_collect()
	if #batch > 0 then
		self:_send(batch)
	end
	self:_refetchDue()
	self:_renewDue()
	return #batch > 0
end

-- _fault reports an error raised inside one of the module's loops, which
-- carries on.
function SaveSync:_fault(where, err)
	self.Stats.faults = self.Stats.faults + 1
	warn("SaveSync: " .. where .. " failed and carries on: " .. tostring(err))
end

-- _collect gathers the mutations due now, across players, in each
-- player's order: a player's later mutations never overtake an earlier
-- one waiting for its retry.
function SaveSync:_collect()
	local cfg = self._config
	local now = self._clock()
	local batch = {}
	local bytes = 0
	local ids = {}
	for userId in pairs(self._players) do
		table.insert(ids, userId)
	end
	table.sort(ids)
	for _, userId in ipairs(ids) do
		local st = self._players[userId]
		for i, e in ipairs(st.pending) do
			if e.nextAt > now or (e.needsHead and i > 1) or #batch >= cfg.maxBatch then
				break
			end
			if e.attempts == 0 and e.source == "live" then
				self:_stampVersion(st, e)
			end
			local size = #self._http:JSONEncode(e.mutation) + #e.key + 64
			if #batch > 0 and bytes + size > cfg.maxBatchBytes then
				break
			end
			bytes = bytes + size
			table.insert(batch, { st = st, entry = e })
		end
	end
	return batch
end

-- _stampVersion fixes the versions a mutation carries at its first send;
-- retries send the identical body, as idempotency requires.
function SaveSync:_stampVersion(st, e)
	local versioned = false
	for _, op in ipairs(e.mutation.ops) do
		if VERSIONED[op.op] then
			versioned = true
		end
		if op.op == "collection.remove" and op.observedVersion == nil then
			op.observedVersion = st.version
		end
	end
	if versioned and e.mutation.expectedVersion == nil then
		e.mutation.expectedVersion = st.version
	end
end

-- _send writes a batch: one mutation through the single route, several
-- through the batch route. A request that fails as a whole counts as a
-- failed attempt of each of its mutations.
function SaveSync:_send(batch)
	for _, item in ipairs(batch) do
		item.entry.attempts = item.entry.attempts + 1
		if item.entry.attempts > 1 then
			self.Stats.retries = self.Stats.retries + 1
		end
	end
	local solo = nil
	for _, item in ipairs(batch) do
		if item.entry.solo then
			solo = item
			break
		end
	end
	if #batch == 1 or solo then
		local item = solo or batch[1]
		for _, other in ipairs(batch) do
			if other ~= item then
				other.entry.attempts = other.entry.attempts - 1
			end
		end
		local res = self:_request(
			"POST",
			"/v1/players/" .. idString(item.st.userId) .. "/mutations",
			self._http:JSONEncode(item.entry.mutation),
			{ ["Idempotency-Key"] = item.entry.key }
		)
		if res.throttled then
			self:_unsent({ item })
			return
		end
		if res.ok and type(res.body.version) ~= "number" then
			res = unreadable("the mutation answer has no version")
		end
		if res.ok then
			self:_settleCommitted(item.st, item.entry, res.body)
		elseif retryable(res) then
			self:_settleFailed(item.st, item.entry, errorOf(res))
		else
			self:_settleRefused(item.st, item.entry, errorOf(res))
		end
		return
	end
	local mutations = {}
	for _, item in ipairs(batch) do
		table.insert(mutations, { userId = item.st.userId, idempotencyKey = item.entry.key, mutation = item.entry.mutation })
	end
	self.Stats.batches = self.Stats.batches + 1
	local res = self:_request("POST", "/v1/batch/mutations", self._http:JSONEncode({ mutations = mutations }))
	if res.throttled then
		self:_unsent(batch)
		return
	end
	if not res.ok then
		local err = errorOf(res)
		for _, item in ipairs(batch) do
			if retryable(res) then
				self:_settleFailed(item.st, item.entry, err)
			else
				-- The batch as a whole was refused (one malformed mutation, or
				-- too large): send each on its own so only the bad one fails.
				item.entry.attempts = item.entry.attempts - 1
				item.entry.solo = true
			end
		end
		return
	end
	local byKey = {}
	for _, item in ipairs(batch) do
		byKey[item.entry.key] = item
	end
	-- Each result stands alone; one that cannot be read leaves its
	-- mutation to be retried under its key, like a lost answer.
	for _, r in ipairs(asTable(res.body.results) or {}) do
		local item = type(r) == "table" and type(r.idempotencyKey) == "string" and byKey[r.idempotencyKey] or nil
		if item and type(r.status) == "number" and (r.status ~= 200 or type(r.result) == "table") then
			byKey[r.idempotencyKey] = nil
			if r.status == 200 then
				self:_settleCommitted(item.st, item.entry, r.result)
			else
				local err = errorFrom(r.error, r.status)
				if retryable({ status = r.status }) then
					self:_settleFailed(item.st, item.entry, err)
				else
					self:_settleRefused(item.st, item.entry, err)
				end
			end
		end
	end
	local left = {}
	for _, item in ipairs(batch) do
		if byKey[item.entry.key] then
			table.insert(left, item)
		end
	end
	for _, item in ipairs(left) do
		self:_settleFailed(item.st, item.entry, makeError("UNAVAILABLE", "the batch answer had no readable result for this mutation"))
	end
end

-- _unsent takes back the attempt of mutations whose request HttpService
-- never sent (its limit): they go again once it takes requests.
function SaveSync:_unsent(batch)
	for _, item in ipairs(batch) do
		if item.entry.attempts > 0 then
			item.entry.attempts = item.entry.attempts - 1
		end
		item.entry.nextAt = math.max(item.entry.nextAt, self._httpBlockedUntil)
	end
end

local function removeEntry(list, entry)
	for i, e in ipairs(list) do
		if e == entry then
			table.remove(list, i)
			return true
		end
	end
	return false
end

-- _recompute rebuilds the view from the confirmed save and the mutations
-- not yet confirmed, and fires Changed when it differs.
function SaveSync:_recompute(st, reason, mutationId)
	local view = deepCopy(st.confirmed)
	for _, e in ipairs(st.pending) do
		for _, op in ipairs(e.mutation.ops) do
			applyOp(view, op)
		end
	end
	for _, e in ipairs(st.parked) do
		for _, op in ipairs(e.mutation.ops) do
			applyOp(view, op)
		end
	end
	local changed = not deepEqual(view, st.view)
	st.view = view
	if changed and not st.left then
		self.Changed:Fire(st.player, deepCopy(view), { reason = reason, mutationId = mutationId })
	end
end

function SaveSync:_settleCommitted(st, entry, outcome)
	removeEntry(st.pending, entry)
	outcome = asTable(outcome) or {}
	local before, after = asNumber(outcome.versionBefore, 0), asNumber(outcome.version, 0)
	local changes = asTable(outcome.changes) or {}
	if before == st.version then
		for _, change in ipairs(changes) do
			if type(change) == "table" then
				applyChange(st.confirmed, change)
			end
		end
		st.version = after
	elseif after > st.version then
		-- Someone else wrote in between: these paths are right, the rest may
		-- not be, so refetch.
		for _, change in ipairs(changes) do
			if type(change) == "table" then
				applyChange(st.confirmed, change)
			end
		end
		st.refetchTarget = math.max(st.refetchTarget, after)
	end
	-- after <= st.version: the confirmed save already holds this commit
	-- (a replay of a mutation recovered from a cache or the DLQ).
	self:_settledFromDeadLetter(st, entry)
	self:_recompute(st, "commit", entry.key)
	entry.result = { ok = true, value = outcome }
	self.MutationCommitted:Fire(st.player, entry.key, outcome)
end

function SaveSync:_settleRefused(st, entry, err)
	removeEntry(st.pending, entry)
	local d = err.details or {}
	if err.code == "VERSION_CONFLICT" and type(d.save) == "table" and type(d.currentVersion) == "number" then
		if d.currentVersion > st.version then
			st.confirmed = d.save
			st.version = d.currentVersion
		end
	end
	self:_settledFromDeadLetter(st, entry)
	self:_recompute(st, "rollback", entry.key)
	entry.result = { ok = false, value = err }
	self.MutationRefused:Fire(st.player, entry.key, err)
end

function SaveSync:_settleFailed(st, entry, err)
	entry.lastError = err
	if entry.attempts >= self._config.maxAttempts then
		self:_park(st, entry, err)
		return
	end
	entry.nextAt = self._clock() + self:_backoff(entry.attempts)
end

-- _park moves a mutation that failed every attempt to the dead-letter
-- queue. Its change stays in the view: it is not refused, only late, and
-- the player's next join writes it.
function SaveSync:_park(st, entry, err)
	removeEntry(st.pending, entry)
	table.insert(st.parked, entry)
	self.Stats.deadLettered = self.Stats.deadLettered + 1
	entry.result = { ok = false, value = err }
	if entry.source ~= "deadletter" then
		local out = self._deadLetterOut[st.userId] or {}
		table.insert(out, entry)
		self._deadLetterOut[st.userId] = out
	end
	self.MutationDeadLettered:Fire(st.player, entry.key, err)
end

function SaveSync:_hasReplaying(st)
	for _, e in ipairs(st.pending) do
		if e.source ~= "live" then
			return true
		end
	end
	return false
end

--------------------------------------------------------------------------
-- Invalidation and refetch
--------------------------------------------------------------------------

-- _invalidate asks for a refetch of a held player whose save reached
-- version elsewhere (nil: unknown version).
function SaveSync:_invalidate(userId, version)
	local st = self._players[tonumber(userId) or false]
	if not st then
		return
	end
	version = tonumber(version)
	if version == nil then
		version = st.version + 1
	end
	if version > st.version then
		st.refetchTarget = math.max(st.refetchTarget, version)
	end
end

function SaveSync:_refetchDue()
	local now = self._clock()
	local due = {}
	for _, st in pairs(self._players) do
		if st.refetchTarget > st.version and not st.left and (st.refetchAt or 0) <= now then
			table.insert(due, st)
		end
	end
	for _, st in ipairs(due) do
		self.Stats.refetches = self.Stats.refetches + 1
		local res = self:_request("GET", "/v1/players/" .. idString(st.userId))
		local body = res.ok and res.body or nil
		if body and type(body.version) == "number" and (body.save == nil or type(body.save) == "table") then
			st.refetchFailures = 0
			if body.version > st.version and not st.left then
				st.confirmed = body.save or {}
				st.version = body.version
				self:_recompute(st, "refetch")
			end
			st.refetchTarget = 0
		else
			-- Tried again after a backoff, not on every pass of the loop.
			st.refetchFailures = (st.refetchFailures or 0) + 1
			st.refetchAt = self._clock() + self:_backoff(math.min(st.refetchFailures, 6))
		end
	end
end

-- _renewDue renews every lease that is due in one request per 100
-- players (POST /v1/batch/sessions/renew), so renewals cost a server a few
-- requests a minute however many players it holds. Each lease's answer
-- stands alone: a lease taken over elsewhere reports SessionLost, a
-- transient failure is tried again in a few seconds.
function SaveSync:_renewDue()
	local now = self._clock()
	local due = {}
	local anyDue = false
	for _, st in pairs(self._players) do
		if st.renewAt <= now and not st.left and not st.lost then
			anyDue = true
		end
	end
	if not anyDue then
		return
	end
	-- Leases due soon go in the same request: joins spread over a few
	-- seconds would otherwise cost one request each.
	for _, st in pairs(self._players) do
		if st.renewAt <= now + math.min(10, st.renewEvery / 3) and not st.left and not st.lost then
			table.insert(due, st)
		end
	end
	local first = 1
	while first <= #due do
		local chunk, ids = {}, {}
		for i = first, math.min(first + 99, #due) do
			table.insert(chunk, due[i])
			table.insert(ids, due[i].session.id or "")
		end
		first = first + #chunk
		local res = self:_request("POST", "/v1/batch/sessions/renew", self._http:JSONEncode({ sessionIds = ids }))
		local results = res.ok and asTable(res.body.results) or nil
		for i, st in ipairs(chunk) do
			local item = results and asTable(results[i]) or nil
			local status = item and asNumber(item.status, nil) or nil
			if status == 200 then
				st.renewAt = now + st.renewEvery
			elseif status and not retryable({ status = status }) then
				self:_lose(st, errorFrom(item.error, status))
			elseif not res.ok and not retryable(res) then
				self:_lose(st, errorOf(res))
			else
				st.renewAt = now + math.min(5, st.renewEvery)
			end
		end
	end
end

-- _lose marks a player's session lost and tells the game: SessionLost
-- fires, Mutate refuses with SESSION_LOST from now on, and (unless
-- config.kickOnSessionLost is false) a player still on this server is
-- kicked, since another server now writes their save. Mutations already
-- queued are still written: deltas commute, so nothing earned is lost.
function SaveSync:_lose(st, err)
	if st.lost or st.left then
		return
	end
	st.lost = true
	self.SessionLost:Fire(st.player, err)
	local player = st.player
	if self._config.kickOnSessionLost and not st.leaving and player.Parent ~= nil and type(player.Kick) == "function" then
		task.spawn(function()
			pcall(player.Kick, player, self._config.sessionLostMessage)
		end)
	end
end

-- _onMessage reads a forwarder message: {"t":"inv","u":[ids],"v":[versions]}.
function SaveSync:_onMessage(message)
	local data = message and message.Data
	if type(data) == "string" then
		local ok, decoded = pcall(self._http.JSONDecode, self._http, data)
		if not ok then
			return
		end
		data = decoded
	end
	if type(data) ~= "table" or (type(data.u) ~= "table" and data.t ~= "release") then
		return
	end
	if data.t == "release" then
		self:_onReleaseRequest(data)
		return
	end
	if data.t == "erase" then
		-- A player's data was erased on the service (right to erasure): the
		-- module's DataStore copies go too. Every server hears it; each
		-- waits a moment and finds nothing left if another was quicker.
		for _, userId in ipairs(data.u) do
			if type(userId) == "number" then
				task.spawn(function()
					task.wait(self._random() * 10)
					self:EraseAsync(userId)
				end)
			end
		end
		return
	end
	if data.t ~= "inv" then
		return
	end
	local versions = asTable(data.v) or {}
	for i, userId in ipairs(data.u) do
		self:_invalidate(userId, versions[i])
	end
end

-- _subscribe subscribes to the invalidation topic, trying again with
-- backoff (up to a minute apart) while MessagingService refuses; the
-- changes poll runs every pollGap seconds until it succeeds.
-- _onReleaseRequest handles a hand-off request {"t":"release","u":userId,
-- "j":jobId} from a server the player moved to: if this server holds the
-- player, it writes what is queued and releases the session now, rather
-- than when Roblox gets round to PlayerRemoving or the lease runs out.
function SaveSync:_onReleaseRequest(data)
	local userId = tonumber(data.u)
	local st = userId and self._players[userId]
	if not st or data.j ~= self._config.jobId or st.leaving or st.lost then
		return
	end
	task.spawn(function()
		self:_leave(userId, self._config.handOffTimeout, self._clock() + self._config.handOffTimeout + 5)
	end)
end

-- _askRelease asks the server holding a player (details.jobId of a
-- SESSION_HELD refusal) to release it, over MessagingService.
function SaveSync:_askRelease(userId, holder)
	if type(holder) ~= "string" or holder == "" or not self._messaging then
		return
	end
	local message = self._http:JSONEncode({ t = "release", u = userId, j = holder })
	local ok, err = pcall(self._messaging.PublishAsync, self._messaging, self._config.topic, message)
	if not ok then
		warn("SaveSync: could not ask " .. holder .. " to release " .. idString(userId) .. ": " .. tostring(err))
	end
end

function SaveSync:_subscribe()
	for attempt = 1, 100000 do
		if self._stopped then
			return
		end
		local ok, err = pcall(self._messaging.SubscribeAsync, self._messaging, self._config.topic, function(message)
			self:_onMessage(message)
		end)
		if ok then
			-- Studio's MessagingService is a namespace of its own: the
			-- service's messages never reach it, so Studio polls as if
			-- unsubscribed.
			self._subscribed = not self._studio
			return
		end
		local ceiling = math.min(60, 5 * 2 ^ (attempt - 1))
		warn("SaveSync: MessagingService:SubscribeAsync failed (" .. tostring(err) .. "); polling for changes meanwhile")
		task.wait(ceiling / 2 + ceiling / 2 * self._random())
	end
end

-- _pollLoop long-polls the changes route while the server holds players:
-- the only invalidation path when MessagingService could not subscribe,
-- and a slower safety net for lost messages when it could.
function SaveSync:_pollLoop()
	local cfg = self._config
	self._pollFailures = 0
	for _ = 1, 100000000 do
		if self._stopped then
			return
		end
		if next(self._players) ~= nil then
			local ok, err = pcall(self._pollOnce, self)
			if not ok then
				self:_fault("changes poll", err)
				task.wait(1)
			end
		end
		if self._subscribed then
			task.wait(cfg.safetyPollGap)
		else
			task.wait(cfg.pollGap)
		end
	end
end

function SaveSync:_pollOnce()
	local cfg = self._config
	local path = "/v1/servers/"
		.. self._http:UrlEncode(cfg.jobId)
		.. "/changes?timeout="
		.. idString(cfg.longPollSeconds)
		.. "&cursor="
		.. self._http:UrlEncode(self._cursor)
	local res = self:_request("GET", path)
	if res.ok and (res.body.changes == nil or type(res.body.changes) == "table") then
		self._pollFailures = 0
		if type(res.body.cursor) == "string" then
			self._cursor = res.body.cursor
		end
		for _, change in ipairs(res.body.changes or {}) do
			if type(change) == "table" then
				self:_invalidate(change.userId, change.version)
			end
		end
	else
		self._pollFailures = self._pollFailures + 1
		task.wait(self:_backoff(math.min(self._pollFailures, 6)))
	end
end

--------------------------------------------------------------------------
-- DataStores: session cache and dead-letter queue
--------------------------------------------------------------------------

-- Every DataStore call checks the server's budget first and leaves
-- config.dataStoreReserve requests for the game, and no key is written
-- twice within KEY_WRITE_SPACING (1 second). A call that cannot go now is
-- left for later: the cache is for recovery, never the authority, and the dead-letter
-- queue keeps its entries in memory until their write lands.

function SaveSync:_budget(kind)
	local ok, n = pcall(self._dataStores.GetRequestBudgetForRequestType, self._dataStores, Enum.DataStoreRequestType[kind])
	if not ok then
		return 0
	end
	return n
end

function SaveSync:_canRead()
	return self:_budget("GetAsync") > self._config.dataStoreReserve
end

-- _slot names a key for the write spacing: keys of different stores are
-- different keys ("u<userId>" is both the session list and the
-- dead-letter queue).
function SaveSync:_slot(store, key)
	if store == self._deadLetters then
		return self._config.deadLetterStore .. "/" .. key
	end
	return self._config.cacheStore .. "/" .. key
end

function SaveSync:_canWrite(slot)
	local backoff = self._writeBackoff[slot]
	if backoff and self._clock() < backoff.untilAt and not self._closing then
		return false
	end
	local last = self._lastKeyWrite[slot]
	if last and self._clock() - last < KEY_WRITE_SPACING - 1e-6 then
		return false
	end
	return self:_budget("SetIncrementAsync") > self._config.dataStoreReserve
end

function SaveSync:_canUpdate(slot)
	return self:_canRead() and self:_canWrite(slot)
end

-- _write makes one DataStore write of a key (SetAsync, UpdateAsync,
-- RemoveAsync) and returns pcall's results. A failed write of a key
-- (an outage, throttling: codes 301-306, 5xx) puts that key in backoff
-- (2, 4, 8 ... 60 seconds, with jitter), so a failing DataStore costs a
-- few requests a minute, not one a second, out of the server's budget.
function SaveSync:_write(slot, store, method, ...)
	self._lastKeyWrite[slot] = self._clock()
	local ok, a, b = pcall(store[method], store, ...)
	if ok then
		self._writeBackoff[slot] = nil
	else
		local f = self._writeBackoff[slot] or { failures = 0 }
		f.failures = f.failures + 1
		local ceiling = math.min(60, 2 ^ f.failures)
		f.untilAt = self._clock() + ceiling / 2 + ceiling / 2 * self._random()
		self._writeBackoff[slot] = f
		warn("SaveSync: DataStore " .. method .. " of " .. slot .. " failed (" .. tostring(a) .. "); next try in " .. string.format("%.0f", f.untilAt - self._clock()) .. " s")
	end
	return ok, a, b
end

-- entryKey names a session's cache entry: "u<userId>/<epoch>.<8 hex>",
-- from the session id "<userId>.<epoch>.<32 hex>". The epoch never repeats
-- for a player, and the key stays within DataStore's 50 characters for any
-- user id (the whole session id would not: 57 characters for a 10-digit id).
local function entryKey(userId, sessionId)
	local sid = tostring(sessionId)
	local epoch, secret = string.match(sid, "^%-?%d+%.(%d+)%.(%x+)$")
	local suffix
	if epoch then
		suffix = epoch .. "." .. string.sub(secret, 1, 8)
	else
		suffix = string.sub(sid, -16)
	end
	return string.sub("u" .. idString(userId) .. "/" .. suffix, 1, 50)
end

function SaveSync:_cacheKey(st)
	return entryKey(st.userId, st.session.id)
end

local function indexKey(userId)
	return "u" .. idString(userId)
end

-- MAX_INDEXED_SESSIONS bounds a player's session list: sessions whose
-- entries could not be read for this many joins are dropped with them.
local MAX_INDEXED_SESSIONS = 10

-- _waitSpacing waits until a key may be written again by this module.
function SaveSync:_waitSpacing(slot)
	local last = self._lastKeyWrite[slot]
	if last and self._clock() - last < KEY_WRITE_SPACING then
		task.wait(KEY_WRITE_SPACING - (self._clock() - last))
	end
end

-- _recover runs on join: it reads the mutations an earlier session of this
-- player left unsent (a crashed server, a restarted module) and the
-- player's dead-letter queue, and queues them ahead of anything new. They
-- carry their original idempotency keys, so one that did commit replays.
-- The session list and the dead-letter queue are read at once; what
-- follows (this session's entry, the list's pruning) runs in the
-- background, so a returning player's join waits for one DataStore call.
function SaveSync:_recover(st, replacedSessionId)
	local userId = st.userId
	local known = {}
	local recovered = {}
	local function take(list, source)
		if type(list) ~= "table" then
			return
		end
		for _, m in ipairs(list) do
			if type(m) == "table" and known[m.key] and source == "deadletter" then
				-- Left unsent by a session and dead-lettered too: settling it
				-- must clear the dead-letter queue.
				known[m.key].source = source
			elseif type(m) == "table" and type(m.key) == "string" and type(m.mutation) == "table" and type(m.mutation.ops) == "table" and not known[m.key] then
				local needsHead = false
				for _, op in ipairs(m.mutation.ops) do
					if type(op) == "table" and NEEDS_HEAD[op.op] then
						needsHead = true
					end
				end
				local entry = {
					key = m.key,
					mutation = m.mutation,
					attempts = 0,
					nextAt = 0,
					needsHead = needsHead,
					source = source,
				}
				known[m.key] = entry
				table.insert(recovered, entry)
			end
		end
	end

	-- The dead-letter queue is read beside the session list.
	local dlq, dlqDone = nil, true
	if self:_canRead() then
		dlqDone = false
		task.spawn(function()
			local ok, value = pcall(self._deadLetters.GetAsync, self._deadLetters, indexKey(userId))
			if ok then
				dlq = value
			end
			dlqDone = true
		end)
	end

	-- The session list gains the new id first; older ids leave it only
	-- once their entries were read and moved into the new session's entry,
	-- so a read skipped (budget) or failed leaves them for the next join.
	local previous = {}
	local dropped = {}
	local iKey = indexKey(userId)
	local iSlot = self:_slot(self._cache, iKey)
	if self:_canUpdate(iSlot) then
		local ok = self:_write(iSlot, self._cache, "UpdateAsync", iKey, function(old)
			previous = {}
			dropped = {}
			local sessions = {}
			if type(old) == "table" and type(old.sessions) == "table" then
				for _, sid in ipairs(old.sessions) do
					if type(sid) == "string" and sid ~= st.session.id then
						table.insert(sessions, sid)
					end
				end
			end
			while #sessions >= MAX_INDEXED_SESSIONS do
				table.insert(dropped, table.remove(sessions, 1))
			end
			for _, sid in ipairs(sessions) do
				table.insert(previous, sid)
			end
			table.insert(sessions, st.session.id)
			return { sessions = sessions }, { userId }
		end)
		if not ok then
			previous = {}
			dropped = {}
		end
	end
	for _, sid in ipairs(dropped) do
		table.insert(self._obsoleteCacheKeys, entryKey(userId, sid))
	end
	if replacedSessionId then
		table.insert(previous, replacedSessionId)
	end
	local seen = {}
	local moved = {}
	local movedKeys = {}
	local movedAny = false
	local carried = false
	for _, sid in ipairs(previous) do
		if sid ~= st.session.id and not seen[sid] and self:_canRead() then
			seen[sid] = true
			local key = entryKey(userId, sid)
			local ok, cached = pcall(self._cache.GetAsync, self._cache, key)
			if ok then
				if type(cached) == "table" then
					local before = #recovered
					take(cached.pending, "recovered")
					carried = carried or #recovered > before
					table.insert(movedKeys, key)
				end
				moved[sid] = true
				movedAny = true
			end
		end
	end
	for _ = 1, 10000 do
		if dlqDone then
			break
		end
		task.wait()
	end
	if type(dlq) == "table" then
		take(dlq.mutations, "deadletter")
	end
	for i, e in ipairs(recovered) do
		table.insert(st.pending, i, e)
		for _, op in ipairs(e.mutation.ops) do
			applyOp(st.view, op)
		end
	end
	if #recovered > 0 then
	end
	if movedAny then
		task.spawn(function()
			self:_pruneIndex(st, moved, movedKeys, carried)
		end)
	end
end

-- _pruneIndex drops the sessions whose entries were read on join from the
-- player's session list, once what they held is safe in this session's
-- entry, and removes those entries.
function SaveSync:_pruneIndex(st, moved, movedKeys, carried)
	if carried then
		-- The entries held unsent mutations: they leave the DataStore only
		-- once this session's entry holds them.
		local written = false
		for _ = 1, 5 do
			self:_waitSpacing(self:_slot(self._cache, self:_cacheKey(st)))
			if st.left or self:_writeCache(st) then
				written = not st.left
				break
			end
			task.wait(1)
		end
		if not written then
			return
		end
	end
	for _, key in ipairs(movedKeys) do
		table.insert(self._obsoleteCacheKeys, key)
	end
	local iKey = indexKey(st.userId)
	local iSlot = self:_slot(self._cache, iKey)
	self:_waitSpacing(iSlot)
	if self:_canUpdate(iSlot) then
		self:_write(iSlot, self._cache, "UpdateAsync", iKey, function(old)
			local sessions = {}
			if type(old) == "table" and type(old.sessions) == "table" then
				for _, sid in ipairs(old.sessions) do
					if not moved[sid] then
						table.insert(sessions, sid)
					end
				end
			end
			return { sessions = sessions }, { st.userId }
		end)
	end
end

-- _dropSession runs after a clean leave (nothing dead-lettered): it
-- removes the session's entry, if it was ever written, then the session
-- from the player's list, so the next join has nothing to read but the
-- list and the dead-letter queue. Whatever fails here is read (and
-- dropped) by the next join instead.
function SaveSync:_dropSession(st)
	local key = self:_cacheKey(st)
	if st.cacheWritten then
		local slot = self:_slot(self._cache, key)
		self:_waitSpacing(slot)
		if not self:_canWrite(slot) then
			table.insert(self._obsoleteCacheKeys, key)
			return
		end
		if not self:_write(slot, self._cache, "RemoveAsync", key) then
			table.insert(self._obsoleteCacheKeys, key)
			return
		end
	end
	local iKey = indexKey(st.userId)
	local iSlot = self:_slot(self._cache, iKey)
	self:_waitSpacing(iSlot)
	if self._players[st.userId] or self._joining[st.userId] or not self:_canUpdate(iSlot) then
		-- A rejoin writes the list now; it drops this session when it reads it.
		return
	end
	self:_write(iSlot, self._cache, "UpdateAsync", iKey, function(old)
		if type(old) ~= "table" or type(old.sessions) ~= "table" then
			return nil
		end
		local sessions = {}
		for _, sid in ipairs(old.sessions) do
			if sid ~= st.session.id then
				table.insert(sessions, sid)
			end
		end
		return { sessions = sessions }, { st.userId }
	end)
end

function SaveSync:_settledFromDeadLetter(st, entry)
	if entry.source == "deadletter" then
		local settled = self._deadLetterSettled[st.userId] or {}
		settled[entry.key] = true
		self._deadLetterSettled[st.userId] = settled
	end
end

-- _writeCache writes a player's session cache entry: the mutations at
-- risk, those unconfirmed for config.cacheAfter seconds (or recovered)
-- and those dead-lettered. Mutations the service confirms at once never
-- cost a DataStore write.
function SaveSync:_writeCache(st)
	local key = self:_cacheKey(st)
	local slot = self:_slot(self._cache, key)
	if not self:_canWrite(slot) then
		return false
	end
	local unsent = self:_atRisk(st)
	st.cacheWritten = true
	local ok = self:_write(slot, self._cache, "SetAsync", key, {
		v = 1,
		userId = st.userId,
		sessionId = st.session.id,
		version = st.version,
		schemaVersion = st.schemaVersion,
		pending = unsent,
	}, { st.userId })
	if ok then
		st.cachedKeys = keysOf(unsent)
	end
	return ok
end

-- _atRisk lists the mutations a crash now would lose: unconfirmed for
-- config.cacheAfter seconds, recovered from an earlier session, or
-- dead-lettered.
function SaveSync:_atRisk(st)
	local now = self._clock()
	local out = {}
	for _, e in ipairs(st.pending) do
		if e.source ~= "live" or now - (e.madeAt or 0) >= self._config.cacheAfter then
			table.insert(out, { key = e.key, mutation = e.mutation })
		end
	end
	for _, e in ipairs(st.parked) do
		table.insert(out, { key = e.key, mutation = e.mutation })
	end
	return out
end

-- _writeDeadLetters appends a player's dead-lettered mutations to the
-- dead-letter DataStore and drops the ones replayed and settled. With
-- wait, it waits out the key's write spacing (Leave, Close).
function SaveSync:_writeDeadLetters(userId, wait)
	local out = self._deadLetterOut[userId]
	local settled = self._deadLetterSettled[userId]
	if (out == nil or #out == 0) and settled == nil then
		return true
	end
	local key = indexKey(userId)
	local slot = self:_slot(self._deadLetters, key)
	if wait then
		local last = self._lastKeyWrite[slot]
		if last and self._clock() - last < KEY_WRITE_SPACING then
			task.wait(KEY_WRITE_SPACING - (self._clock() - last))
		end
	end
	if not self:_canUpdate(slot) then
		return false
	end
	-- Take the lists before the call (it yields): entries dead-lettered or
	-- settled meanwhile start new lists and go in the next write.
	out = self._deadLetterOut[userId]
	settled = self._deadLetterSettled[userId]
	self._deadLetterOut[userId] = nil
	self._deadLetterSettled[userId] = nil
	local ok = self:_write(slot, self._deadLetters, "UpdateAsync", key, function(old)
		local value = { v = 1, userId = userId, mutations = {} }
		local present = {}
		if type(old) == "table" and type(old.mutations) == "table" then
			for _, m in ipairs(old.mutations) do
				if not (settled and settled[m.key]) then
					table.insert(value.mutations, m)
					present[m.key] = true
				end
			end
		end
		for _, e in ipairs(out or {}) do
			if not present[e.key] then
				local err = e.lastError or {}
				table.insert(value.mutations, {
					key = e.key,
					mutation = e.mutation,
					error = err.code,
					at = os.time(),
				})
			end
		end
		return value, { userId }
	end)
	if not ok then
		-- Put the taken entries back, ahead of any added meanwhile.
		local newer = self._deadLetterOut[userId]
		if out and #out > 0 then
			local merged = {}
			for _, e in ipairs(out) do
				table.insert(merged, e)
			end
			for _, e in ipairs(newer or {}) do
				table.insert(merged, e)
			end
			self._deadLetterOut[userId] = merged
		end
		if settled then
			local merged = self._deadLetterSettled[userId] or {}
			for k in pairs(settled) do
				merged[k] = true
			end
			self._deadLetterSettled[userId] = merged
		end
	end
	return ok
end

-- _cacheLoop writes the cache entries of players with mutations at risk
-- (every cacheUnsentInterval seconds at most), the dead-letter queue, and
-- removes obsolete entries.
function SaveSync:_cacheLoop()
	for _ = 1, 100000000 do
		if self._stopped then
			return
		end
		local ok, err = pcall(self._cachePass, self)
		if not ok then
			self:_fault("cache loop", err)
		end
		task.wait(1)
	end
end

function SaveSync:_cachePass()
	local cfg = self._config
	local now = self._clock()
	-- Collected first: a write takes and may put back entries of these
	-- tables, which must not happen while pairs walks them.
	local outUsers, settledUsers = {}, {}
	for userId in pairs(self._deadLetterOut) do
		table.insert(outUsers, userId)
	end
	for userId in pairs(self._deadLetterSettled) do
		table.insert(settledUsers, userId)
	end
	for _, userId in ipairs(outUsers) do
		self:_writeDeadLetters(userId, false)
	end
	for _, userId in ipairs(settledUsers) do
		if self._deadLetterSettled[userId] and (not self._players[userId] or not self:_hasReplaying(self._players[userId])) then
			self:_writeDeadLetters(userId, false)
		end
	end
	local players = {}
	for _, st in pairs(self._players) do
		table.insert(players, st)
	end
	for _, st in ipairs(players) do
		-- Written while mutations are at risk, and once more when they
		-- settled so the entry no longer holds them.
		if not st.left and keysOf(self:_atRisk(st)) ~= st.cachedKeys then
			local last = self._lastKeyWrite[self:_slot(self._cache, self:_cacheKey(st))] or -math.huge
			if now - last >= cfg.cacheUnsentInterval then
				self:_writeCache(st)
			end
		end
	end
	-- Taken before the (yielding) removals: keys added meanwhile stay.
	local obsolete = self._obsoleteCacheKeys
	self._obsoleteCacheKeys = {}
	for _, key in ipairs(obsolete) do
		local slot = self:_slot(self._cache, key)
		local removed = false
		if self:_canWrite(slot) then
			removed = self:_write(slot, self._cache, "RemoveAsync", key)
		end
		if not removed then
			table.insert(self._obsoleteCacheKeys, key)
		end
	end
end

--[[
SaveSync:EraseAsync(userId) removes what this module keeps of a player in
its DataStores (the session list, the session entries it names, the
dead-letter queue) and in memory, for a right-to-erasure request. It
yields; it returns true when nothing is left, or false and an error
(UNAVAILABLE: a DataStore call failed; call it again). It runs by itself
when the service's forwarder publishes {"t":"erase","u":[userId]} on the
topic. Every key the module writes also carries the player's user id
(DataStore userIds), so Roblox's data tools find them.
]]
function SaveSync:EraseAsync(userId)
	self._deadLetterOut[userId] = nil
	self._deadLetterSettled[userId] = nil
	self._linkFailures[userId] = nil
	if self.Mode == "mock" then
		self._mock.saves[userId] = nil
		return true
	end
	local iKey = indexKey(userId)
	local ok, index = pcall(self._cache.GetAsync, self._cache, iKey)
	if not ok then
		return false, makeError("UNAVAILABLE", "the session list could not be read: " .. tostring(index))
	end
	local keys = {}
	local held = self._players[userId]
	if held then
		table.insert(keys, { store = self._cache, key = self:_cacheKey(held) })
	end
	if type(index) == "table" and type(index.sessions) == "table" then
		for _, sid in ipairs(index.sessions) do
			table.insert(keys, { store = self._cache, key = entryKey(userId, sid) })
		end
	end
	table.insert(keys, { store = self._cache, key = iKey })
	table.insert(keys, { store = self._deadLetters, key = iKey })
	local failed = nil
	for _, k in ipairs(keys) do
		local slot = self:_slot(k.store, k.key)
		self:_waitSpacing(slot)
		self._writeBackoff[slot] = nil
		local removed, err = self:_write(slot, k.store, "RemoveAsync", k.key)
		if not removed then
			failed = err
		end
	end
	if failed then
		return false, makeError("UNAVAILABLE", "a DataStore key could not be removed: " .. tostring(failed))
	end
	return true
end

--------------------------------------------------------------------------
-- Mock mode (Studio): saves live in memory, ops follow the service's rules
--------------------------------------------------------------------------

-- mockNew is a new player's save in mock mode: config.mockSave (a table or
-- function(userId)), or the starting values of config.mockConfig.
function SaveSync:_mockNew(userId)
	local cfg = self._config
	if type(cfg.mockSave) == "function" then
		return deepCopy(cfg.mockSave(userId)) or {}
	elseif type(cfg.mockSave) == "table" then
		return deepCopy(cfg.mockSave)
	end
	local save = { currencies = {}, stats = {}, items = {}, loadout = {}, settings = {}, collections = {} }
	local rules = cfg.mockConfig or {}
	for id, c in pairs(rules.currencies or {}) do
		save.currencies[id] = c.start or 0
	end
	for id, c in pairs(rules.stats or {}) do
		save.stats[id] = c.start or 0
	end
	for key, c in pairs(rules.settings or {}) do
		save.settings[key] = c.default
	end
	for id in pairs(rules.collections or {}) do
		save.collections[id] = {}
	end
	return save
end

function SaveSync:_mockJoin(player)
	local userId = player.UserId
	local existing = self._players[userId]
	if existing then
		return deepCopy(existing.view)
	end
	local kept = self._mock.saves[userId] or { save = self:_mockNew(userId), version = 0 }
	local st = {
		player = player,
		userId = userId,
		session = { id = "mock" },
		version = kept.version,
		confirmed = kept.save,
		view = deepCopy(kept.save),
		pending = {},
		parked = {},
		refetchTarget = 0,
		cachedKeys = "",
	}
	self._players[userId] = st
	return deepCopy(st.view)
end

function SaveSync:_mockLeave(userId)
	local st = self._players[userId]
	if st then
		self._mock.saves[userId] = { save = st.confirmed, version = st.version }
		self._players[userId] = nil
		st.left = true
	end
	return true
end

-- _mockEnqueue applies a mutation at once under mock rules and settles it
-- as the service would: committed (version + 1) or refused (unchanged).
function SaveSync:_mockEnqueue(player, ops, options)
	local st = type(player) == "table" and self._players[player.UserId] or nil
	if not st or st.left then
		return nil, makeError("NOT_JOINED", "Join the player before mutating their save")
	end
	if type(ops) == "table" and type(ops.op) == "string" then
		ops = { ops }
	end
	if type(ops) ~= "table" or #ops == 0 then
		warn("SaveSync: Mutate refused: ops must be an op or a non-empty list of ops")
		return nil, makeError("INVALID_ARGUMENT", "ops must be an op ({op = \"currency.add\", ...}) or a non-empty list of ops")
	end
	options = options or {}
	local key = options.idempotencyKey or self._http:GenerateGUID(false)
	st.mockDone = st.mockDone or {}
	if st.mockDone[key] then
		return st.mockDone[key]
	end
	local entry = { key = key, mutation = { ops = deepCopy(ops) } }
	local save = deepCopy(st.confirmed)
	local err = nil
	for i, op in ipairs(entry.mutation.ops) do
		err = mockApply(save, op, self._config.mockConfig, "ops[" .. i .. "]")
		if err then
			break
		end
	end
	if err then
		entry.result = { ok = false, value = err }
		task.spawn(function()
			self.MutationRefused:Fire(st.player, key, err)
		end)
		return entry
	end
	local before = st.version
	st.version = st.version + 1
	st.confirmed = save
	st.view = deepCopy(save)
	local outcome = { version = st.version, versionBefore = before, changes = {} }
	entry.result = { ok = true, value = outcome }
	st.mockDone[key] = entry
	self.Changed:Fire(st.player, deepCopy(st.view), { reason = "mutate", mutationId = key })
	task.spawn(function()
		self.MutationCommitted:Fire(st.player, key, outcome)
	end)
	return entry
end

-- Roblox names: calls that yield end in Async. The shorter names above
-- stay for code written against 1.0.
SaveSync.JoinAsync = SaveSync.Join
SaveSync.LeaveAsync = SaveSync.Leave
SaveSync.CloseAsync = SaveSync.Close

SaveSync._applyOp = applyOp
SaveSync._applyChange = applyChange
SaveSync._parseTime = parseTime

return SaveSync
