package emulator

import (
	"context"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/type/latlng"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
)

func TestValuesRoundTrip(t *testing.T) {
	c, _ := newClient(t)
	ctx := context.Background()
	ts := time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)
	ref := c.Doc("other/doc")
	tests := []struct {
		name string
		in   any
	}{
		{"null", nil},
		{"bool", true},
		{"int64 max", int64(math.MaxInt64)},
		{"int64 min", int64(math.MinInt64)},
		{"double", 3.25},
		{"negative zero", math.Copysign(0, -1)},
		{"+inf", math.Inf(1)},
		{"-inf", math.Inf(-1)},
		{"microsecond timestamp", ts},
		{"string", "héllo ☃"},
		{"bytes", []byte{0, 1, 2, 255}},
		{"reference", ref},
		{"geopoint", &latlng.LatLng{Latitude: 51.5, Longitude: -0.12}},
		{"array", []any{int64(1), "two", []byte("3"), map[string]any{"x": true}}},
		{"nested map", map[string]any{"a": map[string]any{"b": map[string]any{"c": int64(1)}}}},
		{"empty map", map[string]any{}},
		{"empty array", []any{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := c.Collection("values").Doc(strings.ReplaceAll(tt.name, " ", "_"))
			if _, err := doc.Set(ctx, map[string]any{"v": tt.in}); err != nil {
				t.Fatalf("Set: %v", err)
			}
			snap, err := doc.Get(ctx)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			got, err := snap.DataAt("v")
			if err != nil {
				t.Fatalf("DataAt: %v", err)
			}
			opts := cmp.Options{
				cmp.Comparer(func(a, b *firestore.DocumentRef) bool { return a.Path == b.Path }),
				cmp.Comparer(func(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) }),
				protocmp.Transform(),
			}
			if diff := cmp.Diff(tt.in, got, opts); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNaNRoundTrips(t *testing.T) {
	c, _ := newClient(t)
	ctx := context.Background()
	doc := c.Doc("values/nan")
	if _, err := doc.Set(ctx, map[string]any{"v": math.NaN()}); err != nil {
		t.Fatal(err)
	}
	snap, err := doc.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := snap.DataAt("v")
	if f, ok := v.(float64); !ok || !math.IsNaN(f) {
		t.Errorf("got %v, want NaN", v)
	}
}

func TestTimesAndNoOpWrites(t *testing.T) {
	c, _ := newClient(t)
	ctx := context.Background()
	doc := c.Doc("times/a")
	wr1, err := doc.Create(ctx, map[string]any{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := doc.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !snap.CreateTime.Equal(wr1.UpdateTime) || !snap.UpdateTime.Equal(wr1.UpdateTime) {
		t.Errorf("create/update time = %v/%v, want both %v", snap.CreateTime, snap.UpdateTime, wr1.UpdateTime)
	}
	if snap.UpdateTime.Nanosecond()%1000 != 0 {
		t.Errorf("update time %v is finer than microseconds", snap.UpdateTime)
	}
	wr2, err := doc.Set(ctx, map[string]any{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	if !wr2.UpdateTime.Equal(wr1.UpdateTime) {
		t.Errorf("no-op Set moved update time from %v to %v", wr1.UpdateTime, wr2.UpdateTime)
	}
	wr3, err := doc.Set(ctx, map[string]any{"n": 2})
	if err != nil {
		t.Fatal(err)
	}
	if !wr3.UpdateTime.After(wr1.UpdateTime) {
		t.Errorf("changing Set update time %v not after %v", wr3.UpdateTime, wr1.UpdateTime)
	}
	snap, err = doc.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !snap.CreateTime.Equal(wr1.UpdateTime) {
		t.Errorf("create time changed to %v, want %v", snap.CreateTime, wr1.UpdateTime)
	}
}

func TestSetMergeUpdateDelete(t *testing.T) {
	c, _ := newClient(t)
	ctx := context.Background()
	doc := c.Doc("players/p1")
	steps := []struct {
		name string
		do   func() error
		want map[string]any
	}{
		{"set", func() error {
			_, err := doc.Set(ctx, map[string]any{"a": int64(1), "m": map[string]any{"x": int64(1), "y": int64(2)}, "dot.key": "d"})
			return err
		}, map[string]any{"a": int64(1), "m": map[string]any{"x": int64(1), "y": int64(2)}, "dot.key": "d"}},
		{"merge all", func() error {
			_, err := doc.Set(ctx, map[string]any{"m": map[string]any{"z": int64(3)}}, firestore.MergeAll)
			return err
		}, map[string]any{"a": int64(1), "m": map[string]any{"x": int64(1), "y": int64(2), "z": int64(3)}, "dot.key": "d"}},
		{"merge paths", func() error {
			_, err := doc.Set(ctx, map[string]any{"a": int64(5), "m": map[string]any{"x": int64(9)}}, firestore.Merge([]string{"m", "x"}))
			return err
		}, map[string]any{"a": int64(1), "m": map[string]any{"x": int64(9), "y": int64(2), "z": int64(3)}, "dot.key": "d"}},
		{"update with quoted path and delete", func() error {
			_, err := doc.Update(ctx, []firestore.Update{
				{FieldPath: firestore.FieldPath{"dot.key"}, Value: "e"},
				{Path: "m.y", Value: firestore.Delete},
				{Path: "b", Value: true},
			})
			return err
		}, map[string]any{"a": int64(1), "b": true, "m": map[string]any{"x": int64(9), "z": int64(3)}, "dot.key": "e"}},
		{"set overwrites", func() error {
			_, err := doc.Set(ctx, map[string]any{"only": "this"})
			return err
		}, map[string]any{"only": "this"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := st.do(); err != nil {
				t.Fatalf("write: %v", err)
			}
			snap, err := doc.Get(ctx)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if diff := cmp.Diff(st.want, snap.Data()); diff != "" {
				t.Errorf("data (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := doc.Delete(ctx); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := doc.Get(ctx); status.Code(err) != codes.NotFound {
		t.Errorf("Get after delete: %v, want NotFound", err)
	}
}

func TestPreconditionCodes(t *testing.T) {
	c, _ := newClient(t)
	ctx := context.Background()
	existing := c.Doc("pre/existing")
	wr, err := existing.Create(ctx, map[string]any{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	missing := c.Doc("pre/missing")
	tests := []struct {
		name string
		do   func() error
		want codes.Code
	}{
		{"create existing", func() error { _, err := existing.Create(ctx, map[string]any{"n": 2}); return err }, codes.AlreadyExists},
		{"update missing", func() error {
			_, err := missing.Update(ctx, []firestore.Update{{Path: "n", Value: 1}})
			return err
		}, codes.NotFound},
		{"update stale time", func() error {
			_, err := existing.Update(ctx, []firestore.Update{{Path: "n", Value: 3}}, firestore.LastUpdateTime(wr.UpdateTime.Add(-time.Second)))
			return err
		}, codes.FailedPrecondition},
		{"delete stale time", func() error {
			_, err := existing.Delete(ctx, firestore.LastUpdateTime(wr.UpdateTime.Add(time.Microsecond)))
			return err
		}, codes.FailedPrecondition},
		{"delete missing", func() error { _, err := missing.Delete(ctx); return err }, codes.OK},
		{"delete missing with exists", func() error { _, err := missing.Delete(ctx, firestore.Exists); return err }, codes.NotFound},
		{"update matching time", func() error {
			_, err := existing.Update(ctx, []firestore.Update{{Path: "n", Value: 4}}, firestore.LastUpdateTime(wr.UpdateTime))
			return err
		}, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := status.Code(tt.do()); got != tt.want {
				t.Errorf("code = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFailedBatchChangesNothing(t *testing.T) {
	c, _ := newClient(t)
	ctx := context.Background()
	// Users still commit write batches, so the emulator must keep them
	// atomic even though the Go client marks the API deprecated.
	b := c.Batch() //lint:ignore SA1019 the emulator must serve clients that still use batches
	b.Set(c.Doc("batch/a"), map[string]any{"n": 1})
	b.Update(c.Doc("batch/missing"), []firestore.Update{{Path: "n", Value: 1}})
	if _, err := b.Commit(ctx); status.Code(err) != codes.NotFound {
		t.Fatalf("Commit: %v, want NotFound", err)
	}
	if _, err := c.Doc("batch/a").Get(ctx); status.Code(err) != codes.NotFound {
		t.Errorf("batch/a after failed batch: %v, want NotFound", err)
	}
}

func TestTransforms(t *testing.T) {
	c, _ := newClient(t)
	ctx := context.Background()
	doc := c.Doc("tr/a")
	if _, err := doc.Set(ctx, map[string]any{"i": int64(math.MaxInt64 - 1), "f": 1.5, "arr": []any{int64(1), int64(2)}, "mx": int64(5), "mn": int64(5)}); err != nil {
		t.Fatal(err)
	}
	wr, err := doc.Update(ctx, []firestore.Update{
		{Path: "i", Value: firestore.Increment(10)},
		{Path: "f", Value: firestore.Increment(1)},
		{Path: "arr", Value: firestore.ArrayUnion(2.0, int64(3))},
		{Path: "rm", Value: firestore.ArrayRemove(1)},
		{Path: "mx", Value: firestore.FieldTransformMaximum(7)},
		{Path: "mn", Value: firestore.FieldTransformMinimum(3.5)},
		{Path: "at", Value: firestore.ServerTimestamp},
		{Path: "newcount", Value: firestore.Increment(2)},
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	snap, err := doc.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"i":        int64(math.MaxInt64),
		"f":        2.5,
		"arr":      []any{int64(1), int64(2), int64(3)},
		"rm":       []any{},
		"mx":       int64(7),
		"mn":       3.5,
		"at":       wr.UpdateTime,
		"newcount": int64(2),
	}
	if diff := cmp.Diff(want, snap.Data()); diff != "" {
		t.Errorf("after transforms (-want +got):\n%s", diff)
	}
}

func TestTransformResultsAndCommitTime(t *testing.T) {
	c, p := newClient(t)
	ctx := context.Background()
	g := newGAPIC(t)
	defer g.Close()
	name := dbPath(p) + "/documents/tr/b"
	resp, err := g.Commit(ctx, &firestorepb.CommitRequest{
		Database: dbPath(p),
		Writes: []*firestorepb.Write{{
			Operation: &firestorepb.Write_Update{Update: &firestorepb.Document{Name: name, Fields: map[string]*firestorepb.Value{}}},
			UpdateTransforms: []*firestorepb.DocumentTransform_FieldTransform{
				{FieldPath: "n", TransformType: &firestorepb.DocumentTransform_FieldTransform_Increment{Increment: &firestorepb.Value{ValueType: &firestorepb.Value_IntegerValue{IntegerValue: 4}}}},
				{FieldPath: "t", TransformType: &firestorepb.DocumentTransform_FieldTransform_SetToServerValue{SetToServerValue: firestorepb.DocumentTransform_FieldTransform_REQUEST_TIME}},
			},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.WriteResults) != 1 || len(resp.WriteResults[0].TransformResults) != 2 {
		t.Fatalf("write results = %v, want one with two transform results", resp.WriteResults)
	}
	tr := resp.WriteResults[0].TransformResults
	if tr[0].GetIntegerValue() != 4 {
		t.Errorf("increment result = %v, want 4", tr[0])
	}
	if !tr[1].GetTimestampValue().AsTime().Equal(resp.CommitTime.AsTime()) {
		t.Errorf("server time %v != commit time %v", tr[1].GetTimestampValue().AsTime(), resp.CommitTime.AsTime())
	}
	snap, err := c.Doc("tr/b").Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.Data()["n"]; got != int64(4) {
		t.Errorf("n = %v, want 4", got)
	}
}

func TestLimits(t *testing.T) {
	c, _ := newClient(t)
	ctx := context.Background()
	deep := map[string]any{"leaf": 1}
	for i := 0; i < 21; i++ {
		deep = map[string]any{"m": deep}
	}
	tests := []struct {
		name string
		data map[string]any
		want codes.Code
	}{
		{"just under 1 MiB", map[string]any{"s": strings.Repeat("x", 1000000)}, codes.OK},
		{"over 1 MiB", map[string]any{"s": strings.Repeat("x", 1048000), "t": strings.Repeat("y", 10000)}, codes.InvalidArgument},
		{"too deep", deep, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Collection("limits").Doc(strings.ReplaceAll(tt.name, " ", "_")).Set(ctx, tt.data)
			if got := status.Code(err); got != tt.want {
				t.Errorf("Set: code %v (%v), want %v", got, err, tt.want)
			}
		})
	}
}

func TestGetAllMissingAndDuplicates(t *testing.T) {
	c, _ := newClient(t)
	ctx := context.Background()
	if _, err := c.Doc("g/a").Set(ctx, map[string]any{"n": 1}); err != nil {
		t.Fatal(err)
	}
	snaps, err := c.GetAll(ctx, []*firestore.DocumentRef{c.Doc("g/a"), c.Doc("g/missing"), c.Doc("g/a")})
	if err != nil {
		t.Fatalf("GetAll: %v", err)
	}
	got := []bool{snaps[0].Exists(), snaps[1].Exists(), snaps[2].Exists()}
	if diff := cmp.Diff([]bool{true, false, true}, got); diff != "" {
		t.Errorf("exists (-want +got):\n%s", diff)
	}
}

func TestEmulatorHostEnvAndHTTPReset(t *testing.T) {
	p := testProject(t)
	other := testProject(t)
	t.Setenv("FIRESTORE_EMULATOR_HOST", testSrv.Addr())
	ctx := context.Background()
	c, err := firestore.NewClient(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c2, err := firestore.NewClient(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	for _, cl := range []*firestore.Client{c, c2} {
		if _, err := cl.Doc("r/a").Set(ctx, map[string]any{"n": 1}); err != nil {
			t.Fatal(err)
		}
	}
	req, _ := http.NewRequest(http.MethodDelete, "http://"+testSrv.Addr()+"/emulator/v1/projects/"+p+"/databases/(default)/documents", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reset status %d", resp.StatusCode)
	}
	if _, err := c.Doc("r/a").Get(ctx); status.Code(err) != codes.NotFound {
		t.Errorf("after reset: %v, want NotFound", err)
	}
	if _, err := c2.Doc("r/a").Get(ctx); err != nil {
		t.Errorf("other project after reset: %v, want the document", err)
	}
}

func TestTimestampValuesKeepMicroseconds(t *testing.T) {
	c, _ := newClient(t)
	ctx := context.Background()
	in := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	if _, err := c.Doc("micros/a").Set(ctx, map[string]any{"at": in, "nested": map[string]any{"list": []any{in}}}); err != nil {
		t.Fatal(err)
	}
	snap, err := c.Doc("micros/a").Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := in.Truncate(time.Microsecond)
	if got := snap.Data()["at"].(time.Time); !got.Equal(want) {
		t.Errorf("at = %v, want %v (truncated to microseconds)", got, want)
	}
	list := snap.Data()["nested"].(map[string]any)["list"].([]any)
	if got := list[0].(time.Time); !got.Equal(want) {
		t.Errorf("nested.list[0] = %v, want %v", got, want)
	}
}

func TestArrayTransformResultsAreNull(t *testing.T) {
	_, p := newClient(t)
	g := newGAPIC(t)
	defer g.Close()
	name := dbPath(p) + "/documents/tr/arr"
	elems := &firestorepb.ArrayValue{Values: []*firestorepb.Value{{ValueType: &firestorepb.Value_StringValue{StringValue: "x"}}}}
	resp, err := g.Commit(context.Background(), &firestorepb.CommitRequest{
		Database: dbPath(p),
		Writes: []*firestorepb.Write{{
			Operation: &firestorepb.Write_Update{Update: &firestorepb.Document{Name: name, Fields: map[string]*firestorepb.Value{}}},
			UpdateTransforms: []*firestorepb.DocumentTransform_FieldTransform{
				{FieldPath: "a", TransformType: &firestorepb.DocumentTransform_FieldTransform_AppendMissingElements{AppendMissingElements: elems}},
				{FieldPath: "b", TransformType: &firestorepb.DocumentTransform_FieldTransform_RemoveAllFromArray{RemoveAllFromArray: elems}},
			},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resp.WriteResults[0].TransformResults {
		if _, ok := r.GetValueType().(*firestorepb.Value_NullValue); !ok {
			t.Errorf("transform result %d = %v, want null for array transforms", i, r)
		}
	}
}
