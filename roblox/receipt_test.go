package roblox_test

import (
	"fmt"
	"os"
	"testing"
)

// useReceipts sets MarketplaceService.ProcessReceipt from the example's
// Receipts module, granting 500 gems for product 42.
func (h *harness) useReceipts() {
	h.t.Helper()
	src, err := os.ReadFile("example/src/Receipts.lua")
	if err != nil {
		h.t.Fatal(err)
	}
	fn, err := h.L.LoadString(string(src))
	if err != nil {
		h.t.Fatalf("load Receipts.lua: %v", err)
	}
	h.L.Push(fn)
	if err := h.L.PCall(0, 1, nil); err != nil {
		h.t.Fatalf("run Receipts.lua: %v", err)
	}
	h.L.SetGlobal("Receipts", h.L.Get(-1))
	h.L.Pop(1)
	h.do(`game:GetService("MarketplaceService").ProcessReceipt = Receipts.handler(sync, {
		[42] = {{op = "currency.add", currency = "gems", amount = 500}},
	})`)
}

// deliver hands a receipt for product 42 to ProcessReceipt and returns
// the decision.
func (h *harness) deliver(userID int64, purchaseID string) any {
	h.t.Helper()
	return h.do(fmt.Sprintf(`return __harness.deliverReceipt({PlayerId = %d, ProductId = 42, PurchaseId = %q, CurrencySpent = 99})`, userID, purchaseID))[0]
}

func TestProcessReceiptGrantsOnceAcrossServers(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	ds := newDataStoreBackend()
	a := newHarness(t, svc, ds, "job-shop-a")
	b := newHarness(t, svc, ds, "job-shop-b")
	a.startGame("longPoll = false")
	b.startGame("longPoll = false")
	a.useReceipts()
	b.useReceipts()
	userID := uid(2001)
	a.mustJoin(userID)

	// The first delivery commits, but its answer is lost: the module
	// retries under the receipt's key and answers once the grant landed.
	svc.proxy.fail(fmt.Sprintf("/v1/players/%d/mutations", userID), 1, true)
	if got := a.deliver(userID, "P-1"); got != "PurchaseGranted" {
		t.Errorf("first delivery = %v, want PurchaseGranted", got)
	}
	// Roblox delivers it again (it did not hear the answer), on the same
	// server and, after a teleport, on another.
	if got := a.deliver(userID, "P-1"); got != "PurchaseGranted" {
		t.Errorf("second delivery on the same server = %v, want PurchaseGranted", got)
	}
	a.leave(userID)
	b.mustJoin(userID)
	if got := b.deliver(userID, "P-1"); got != "PurchaseGranted" {
		t.Errorf("delivery on another server = %v, want PurchaseGranted", got)
	}
	if got := balance(t, svc, userID, "gems"); got != 500 {
		t.Errorf("service gems = %d, want 500 (granted once for three deliveries)", got)
	}
	if got := num(b.view(userID), "currencies", "gems"); got != 500 {
		t.Errorf("view gems = %v, want 500", got)
	}

	// During an outage the grant is not confirmed: NotProcessedYet, and
	// the next delivery once the service is back grants it, once.
	svc.proxy.fail(fmt.Sprintf("/v1/players/%d/mutations", userID), 3, false)
	if got := b.deliver(userID, "P-2"); got != "NotProcessedYet" {
		t.Errorf("delivery during an outage = %v, want NotProcessedYet", got)
	}
	b.leave(userID) // the dead-lettered grant is kept for the next join
	a.mustJoin(userID)
	if got := a.deliver(userID, "P-2"); got != "PurchaseGranted" {
		t.Errorf("delivery after the outage = %v, want PurchaseGranted", got)
	}
	if got := balance(t, svc, userID, "gems"); got != 1000 {
		t.Errorf("service gems = %d, want 1000 (two purchases, each once)", got)
	}
}

func TestMutateAsyncAnswersRefusals(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	h := newHarness(t, svc, newDataStoreBackend(), "job-async")
	h.startGame("longPoll = false")
	userID := uid(2002)
	h.mustJoin(userID)
	r := h.do(fmt.Sprintf(`local p = __harness.player(%d)
		local ok1, out = sync:MutateAsync(p, {op = "currency.add", currency = "coins", amount = 5})
		local ok2, err = sync:MutateAsync(p, {{op = "currency.add", currency = "coins", amount = -1000}})
		local ok3, bad = sync:MutateAsync(p, {}, {idempotencyKey = string.rep("k", 129)})
		return ok1, out.version, ok2, err.code, ok3, bad.code`, userID))
	want := []any{true, 1.0, false, "INSUFFICIENT_FUNDS", false, "INVALID_ARGUMENT"}
	if len(r) != len(want) {
		t.Fatalf("MutateAsync results = %v", r)
	}
	for i := range want {
		if r[i] != want[i] {
			t.Errorf("MutateAsync results = %v, want %v", r, want)
			break
		}
	}
}
