package roblox_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestHarnessModelsRoblox checks the stand-ins against the Roblox
// behaviour the module's tests rely on.
func TestHarnessModelsRoblox(t *testing.T) {
	t.Parallel()
	svc := newService(t)

	t.Run("HTTP takes time and pcall may yield", func(t *testing.T) {
		h := newHarness(t, svc, newDataStoreBackend(), "job-model-http")
		start := h.now()
		r := h.do(`local ok, res = pcall(function()
			return game:GetService("HttpService"):RequestAsync({Url = SERVICE_URL .. "/healthz", Method = "GET"})
		end)
		return ok, res.StatusCode`)
		if diff := cmp.Diff([]any{true, 404.0}, r); diff != "" { // the test router has no /healthz
			t.Errorf("RequestAsync inside pcall (-want +got):\n%s", diff)
		}
		if took := h.now() - start; took < defaultHTTPLatency {
			t.Errorf("the request took %.2f virtual seconds, want at least %.2f", took, defaultHTTPLatency)
		}
	})

	t.Run("HTTP limit is a rolling minute with a stall", func(t *testing.T) {
		h := newServer(t, svc, newDataStoreBackend(), "job-model-limit", serverOptions{allowHTTPRefusals: true, httpLatency: -1})
		r := h.do(`local http = game:GetService("HttpService")
			local sent, refused, message = 0, 0, nil
			for i = 1, 501 do
				local ok, err = pcall(http.RequestAsync, http, {Url = SERVICE_URL .. "/healthz", Method = "GET"})
				if ok then sent = sent + 1 else refused = refused + 1; message = err end
				task.wait(0.01)
			end
			task.wait(20)
			local during = pcall(http.RequestAsync, http, {Url = SERVICE_URL .. "/healthz", Method = "GET"})
			task.wait(50)
			local after = pcall(http.RequestAsync, http, {Url = SERVICE_URL .. "/healthz", Method = "GET"})
			return sent, refused, message, during, after`)
		want := []any{500.0, 1.0, httpLimitMessage, false, true}
		if diff := cmp.Diff(want, r); diff != "" {
			t.Errorf("501 requests in a minute, then one 20 s and one 70 s later (-want +got):\n%s", diff)
		}
	})

	t.Run("Studio", func(t *testing.T) {
		h := newServer(t, svc, newDataStoreBackend(), "ignored", serverOptions{studio: true, httpDisabled: true})
		r := h.do(`local http = game:GetService("HttpService")
			local okSecret, secretErr = pcall(http.GetSecret, http, "savesync_server_key")
			local okHttp, httpErr = pcall(http.RequestAsync, http, {Url = SERVICE_URL .. "/healthz"})
			return game.JobId, game:GetService("RunService"):IsStudio(), okSecret, secretErr, okHttp, httpErr`)
		want := []any{"", true, false, noSecretMessage, false, httpDisabledMessage}
		if diff := cmp.Diff(want[:4], r[:4], cmp.Comparer(func(a, b string) bool { return strings.Contains(a, b) || strings.Contains(b, a) })); diff != "" {
			t.Errorf("Studio conditions (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(want[4:], r[4:]); diff != "" {
			t.Errorf("HTTP in Studio (-want +got):\n%s", diff)
		}
	})

	t.Run("DataStore limits and error codes", func(t *testing.T) {
		ds := newDataStoreBackend()
		h := newHarness(t, svc, ds, "job-model-ds")
		h.allowDataStoreErrors = true
		h.failDataStore("S", "SetAsync", "flaky", 1, 502)
		r := h.do(fmt.Sprintf(`local store = game:GetService("DataStoreService"):GetDataStore("S")
			local function try(f, ...) local ok, err = pcall(f, store, ...); return ok and "ok" or err end
			return try(store.SetAsync, string.rep("k", 51), 1),
				try(store.SetAsync, "big", string.rep("x", %d)),
				try(store.SetAsync, "flaky", 1),
				try(store.SetAsync, "flaky", 2),
				try(store.SetAsync, "ids", 3, {%d})`, dataStoreValueMax, uid(1)))
		want := []any{dataStoreError(102), dataStoreError(105), dataStoreError(502), "ok", "ok"}
		if diff := cmp.Diff(want, r); diff != "" {
			t.Errorf("DataStore errors (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]int64{uid(1)}, ds.keyUsers("S", "ids")); diff != "" {
			t.Errorf("user ids of a key (-want +got):\n%s", diff)
		}
		// The budget: 60 a minute with no player; the 61st waits in the queue.
		h.dsViolations = nil
		h.do(`local store = game:GetService("DataStoreService"):GetDataStore("S")
			local done = 0
			for i = 1, 61 do task.spawn(function() store:GetAsync("k"); done = done + 1 end) end
			while done < 61 do task.wait(0.1) end`)
		if len(h.dsViolations) != 1 {
			t.Errorf("violations after 61 reads on a budget of 60 = %v, want one queued read", h.dsViolations)
		}
		h.dsViolations = nil
	})
}
