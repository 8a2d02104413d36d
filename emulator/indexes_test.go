package emulator

import (
	"context"
	"encoding/base64"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/firestore/apiv1/admin/adminpb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

// testIndexes is a firestore.indexes.json in the Firebase CLI's format.
const testIndexes = `{
  "indexes": [
    {"collectionGroup": "cities", "queryScope": "COLLECTION", "fields": [
      {"fieldPath": "country", "order": "ASCENDING"},
      {"fieldPath": "population", "order": "DESCENDING"}
    ]},
    {"collectionGroup": "cities", "queryScope": "COLLECTION", "fields": [
      {"fieldPath": "state", "order": "ASCENDING"},
      {"fieldPath": "population", "order": "DESCENDING"}
    ]},
    {"collectionGroup": "cities", "queryScope": "COLLECTION", "fields": [
      {"fieldPath": "regions", "arrayConfig": "CONTAINS"},
      {"fieldPath": "name", "order": "ASCENDING"}
    ]},
    {"collectionGroup": "landmarks", "queryScope": "COLLECTION_GROUP", "fields": [
      {"fieldPath": "type", "order": "ASCENDING"},
      {"fieldPath": "name", "order": "ASCENDING"},
      {"fieldPath": "__name__", "order": "ASCENDING"}
    ]}
  ],
  "fieldOverrides": [
    {"collectionGroup": "cities", "fieldPath": "blob", "ttl": false, "indexes": []},
    {"collectionGroup": "cities", "fieldPath": "meta", "indexes": []},
    {"collectionGroup": "cities", "fieldPath": "expiresAt", "ttl": true, "indexes": [
      {"order": "ASCENDING", "queryScope": "COLLECTION"}
    ]},
    {"collectionGroup": "landmarks", "fieldPath": "type", "indexes": [
      {"order": "ASCENDING", "queryScope": "COLLECTION"},
      {"order": "DESCENDING", "queryScope": "COLLECTION"},
      {"arrayConfig": "CONTAINS", "queryScope": "COLLECTION"},
      {"order": "ASCENDING", "queryScope": "COLLECTION_GROUP"}
    ]}
  ]
}`

// startIndexed starts a server that checks indexes against testIndexes.
func startIndexed(t *testing.T) *Server {
	t.Helper()
	cfg, err := ParseIndexConfig([]byte(testIndexes))
	if err != nil {
		t.Fatalf("ParseIndexConfig: %v", err)
	}
	srv, err := Start(Options{Indexes: cfg})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// field is an admin API index field for the wanted create links.
func field(path, mode string) *adminpb.Index_IndexField {
	f := &adminpb.Index_IndexField{FieldPath: path}
	switch mode {
	case "ASC":
		f.ValueMode = &adminpb.Index_IndexField_Order_{Order: adminpb.Index_IndexField_ASCENDING}
	case "DESC":
		f.ValueMode = &adminpb.Index_IndexField_Order_{Order: adminpb.Index_IndexField_DESCENDING}
	default:
		f.ValueMode = &adminpb.Index_IndexField_ArrayConfig_{ArrayConfig: adminpb.Index_IndexField_CONTAINS}
	}
	return f
}

// linkedIndex decodes the index a missing-index message links to.
func linkedIndex(t *testing.T, msg string) (param string, ix *adminpb.Index) {
	t.Helper()
	i := strings.Index(msg, "https://console.firebase.google.com/")
	if i < 0 {
		t.Fatalf("message %q has no console link", msg)
	}
	link, _, _ := strings.Cut(msg[i:], " ")
	u, err := url.Parse(link)
	if err != nil {
		t.Fatalf("parse link %q: %v", link, err)
	}
	for _, p := range []string{"create_composite", "create_exemption"} {
		if v := u.Query().Get(p); v != "" {
			b, err := base64.RawURLEncoding.DecodeString(v)
			if err != nil {
				t.Fatalf("decode %s=%q: %v", p, v, err)
			}
			ix = &adminpb.Index{}
			if err := proto.Unmarshal(b, ix); err != nil {
				t.Fatalf("unmarshal %s: %v", p, err)
			}
			return p, ix
		}
	}
	t.Fatalf("link %q creates nothing", link)
	return "", nil
}

func TestMissingIndexes(t *testing.T) {
	srv := startIndexed(t)
	project := testProject(t)
	c := newClientFor(t, srv, project)
	ctx := context.Background()
	seed(t, c, map[string]map[string]any{
		"cities/sf":                 {"name": "San Francisco", "country": "USA", "state": "CA", "population": 860000, "density": 18000, "regions": []any{"west"}},
		"cities/sf/landmarks/ggb":   {"name": "Golden Gate Bridge", "type": "bridge"},
		"cities/tok":                {"name": "Tokyo", "country": "Japan", "population": 9000000, "density": 6000},
		"cities/tok/landmarks/park": {"name": "Ueno Park", "type": "park"},
	})
	cities := c.Collection("cities")
	landmarks := c.CollectionGroup("landmarks")
	db := dbPath(project)
	composite := func(group bool, fields ...*adminpb.Index_IndexField) *adminpb.Index {
		scope, coll := adminpb.Index_COLLECTION, "cities"
		if group {
			scope, coll = adminpb.Index_COLLECTION_GROUP, "landmarks"
		}
		return &adminpb.Index{Name: db + "/collectionGroups/" + coll + "/indexes/_", QueryScope: scope, Fields: fields}
	}
	exemption := func(group bool, coll string, f *adminpb.Index_IndexField) *adminpb.Index {
		scope := adminpb.Index_COLLECTION
		if group {
			scope = adminpb.Index_COLLECTION_GROUP
		}
		return &adminpb.Index{Name: db + "/collectionGroups/" + coll + "/fields/" + f.GetFieldPath(), QueryScope: scope, Fields: []*adminpb.Index_IndexField{f}}
	}
	tests := []struct {
		name      string
		q         firestore.Query
		wantCount int
		wantMsg   string // message up to the link
		wantParam string
		wantIndex *adminpb.Index
		wantTail  string // text after the link
	}{
		{name: "whole collection", q: cities.Query, wantCount: 2},
		{name: "one range (single-field index)", q: cities.Where("population", ">", 1), wantCount: 2},
		{name: "one order descending", q: cities.OrderBy("density", firestore.Desc), wantCount: 2},
		{name: "equalities merge single-field indexes", q: cities.Where("country", "==", "USA").Where("state", "==", "CA"), wantCount: 1},
		{name: "in and array-contains merge", q: cities.Where("country", "in", []any{"USA", "Japan"}).Where("regions", "array-contains", "west"), wantCount: 1},
		{name: "declared composite", q: cities.Where("country", "==", "USA").OrderBy("population", firestore.Desc), wantCount: 1},
		{name: "composites merged on their common ordering", q: cities.Where("country", "==", "USA").Where("state", "==", "CA").OrderBy("population", firestore.Desc), wantCount: 1},
		{name: "array-contains composite", q: cities.Where("regions", "array-contains", "west").OrderBy("name", firestore.Asc), wantCount: 1},
		{name: "order on the equality field", q: cities.Where("country", "==", "USA").OrderBy("country", firestore.Asc), wantCount: 1},
		{name: "or of served terms", q: cities.WhereEntity(firestore.OrFilter{Filters: []firestore.EntityFilter{
			firestore.PropertyFilter{Path: "country", Operator: "==", Value: "Japan"},
			firestore.PropertyFilter{Path: "state", Operator: "==", Value: "CA"},
		}}), wantCount: 2},
		{name: "ttl override keeps its ascending index", q: cities.Where("expiresAt", ">", 0), wantCount: 0},
		{name: "collection group without filters", q: landmarks.Query, wantCount: 2},
		{name: "collection group single-field override", q: landmarks.Where("type", "==", "park"), wantCount: 1},
		{name: "collection group composite", q: landmarks.Where("type", "==", "park").OrderBy("name", firestore.Asc), wantCount: 1},

		{name: "equality and order on another field", q: cities.Where("country", "==", "USA").OrderBy("population", firestore.Asc),
			wantMsg: "The query requires an index. You can create it here: https://console.firebase.google.com/v1/r/project/" + project + "/firestore/indexes?create_composite=", wantParam: "create_composite",
			wantIndex: composite(false, field("country", "ASC"), field("population", "ASC"), field("__name__", "ASC"))},
		{name: "equality and range on another field", q: cities.Where("state", "==", "CA").Where("density", ">", 1),
			wantMsg: "The query requires an index. You can create it here: https://console.firebase.google.com/v1/r/project/" + project + "/firestore/indexes?create_composite=", wantParam: "create_composite",
			wantIndex: composite(false, field("state", "ASC"), field("density", "ASC"), field("__name__", "ASC"))},
		{name: "two orders", q: cities.OrderBy("country", firestore.Asc).OrderBy("name", firestore.Desc),
			wantMsg: "The query requires an index. You can create it here: https://console.firebase.google.com/v1/r/project/" + project + "/firestore/indexes?create_composite=", wantParam: "create_composite",
			wantIndex: composite(false, field("country", "ASC"), field("name", "DESC"), field("__name__", "DESC"))},
		{name: "ranges on two fields", q: cities.Where("population", ">", 1).Where("density", "<", 10000),
			wantMsg: "The query requires an index. You can create it here: https://console.firebase.google.com/v1/r/project/" + project + "/firestore/indexes?create_composite=", wantParam: "create_composite",
			wantIndex: composite(false, field("density", "ASC"), field("population", "ASC"), field("__name__", "ASC")),
			wantTail:  " .\nThe query contains range and inequality filters on multiple fields, please refer to the documentation for index selection best practices: https://cloud.google.com/firestore/docs/query-data/multiple-range-fields."},
		{name: "one unserved term of an or", q: cities.WhereEntity(firestore.OrFilter{Filters: []firestore.EntityFilter{
			firestore.PropertyFilter{Path: "country", Operator: "==", Value: "Japan"},
			firestore.AndFilter{Filters: []firestore.EntityFilter{
				firestore.PropertyFilter{Path: "state", Operator: "==", Value: "CA"},
				firestore.PropertyFilter{Path: "density", Operator: "<", Value: 1},
			}},
		}}),
			// The inequality orders the whole query, so the first term
			// needs density after its equality too.
			wantMsg: "The query requires an index. You can create it here: https://console.firebase.google.com/v1/r/project/" + project + "/firestore/indexes?create_composite=", wantParam: "create_composite",
			wantIndex: composite(false, field("country", "ASC"), field("density", "ASC"), field("__name__", "ASC"))},
		{name: "exempted field", q: cities.Where("blob", "==", "x"),
			wantMsg: "The query requires an ASC index for collection cities and field blob. You can create it here: https://console.firebase.google.com/v1/r/project/" + project + "/firestore/indexes?create_exemption=", wantParam: "create_exemption",
			wantIndex: exemption(false, "cities", field("blob", "ASC"))},
		{name: "subfield of an exempted map", q: cities.OrderBy("meta.size", firestore.Desc),
			wantMsg: "The query requires a DESC index for collection cities and field meta.size. You can create it here: https://console.firebase.google.com/v1/r/project/" + project + "/firestore/indexes?create_exemption=", wantParam: "create_exemption",
			wantIndex: exemption(false, "cities", field("meta.size", "DESC"))},
		{name: "ttl override without a descending index", q: cities.OrderBy("expiresAt", firestore.Desc),
			wantMsg: "The query requires a DESC index for collection cities and field expiresAt. You can create it here: https://console.firebase.google.com/v1/r/project/" + project + "/firestore/indexes?create_exemption=", wantParam: "create_exemption",
			wantIndex: exemption(false, "cities", field("expiresAt", "DESC"))},
		{name: "collection group filter without its index", q: landmarks.Where("name", "==", "Ueno Park"),
			wantMsg: "The query requires a COLLECTION_GROUP_ASC index for collection landmarks and field name. You can create it here: https://console.firebase.google.com/v1/r/project/" + project + "/firestore/indexes?create_exemption=", wantParam: "create_exemption",
			wantIndex: exemption(true, "landmarks", field("name", "ASC"))},
		{name: "collection group order descending", q: landmarks.Where("type", "==", "park").OrderBy("name", firestore.Desc),
			wantMsg: "The query requires an index. You can create it here: https://console.firebase.google.com/v1/r/project/" + project + "/firestore/indexes?create_composite=", wantParam: "create_composite",
			wantIndex: composite(true, field("type", "ASC"), field("name", "DESC"), field("__name__", "DESC"))},
	}
	for _, tt := range tests {
		check := func(t *testing.T, err error) {
			t.Helper()
			if tt.wantMsg == "" {
				if err != nil {
					t.Fatalf("err = %v, want none", err)
				}
				return
			}
			if status.Code(err) != codes.FailedPrecondition {
				t.Fatalf("err = %v, want FAILED_PRECONDITION", err)
			}
			msg := status.Convert(err).Message()
			if !strings.HasPrefix(msg, tt.wantMsg) {
				t.Errorf("message\n%q\nwant prefix\n%q", msg, tt.wantMsg)
			}
			param, ix := linkedIndex(t, msg)
			if param != tt.wantParam {
				t.Errorf("link creates with %s, want %s", param, tt.wantParam)
			}
			if diff := cmp.Diff(tt.wantIndex, ix, protocmp.Transform()); diff != "" {
				t.Errorf("linked index (-want +got):\n%s", diff)
			}
			if tt.wantTail != "" && !strings.HasSuffix(msg, tt.wantTail) {
				t.Errorf("message %q, want suffix %q", msg, tt.wantTail)
			}
			if tt.wantTail == "" && strings.Contains(msg, "\n") {
				t.Errorf("message %q has a second line", msg)
			}
		}
		t.Run(tt.name+"/query", func(t *testing.T) {
			snaps, err := tt.q.Documents(ctx).GetAll()
			check(t, err)
			if err == nil && len(snaps) != tt.wantCount {
				t.Errorf("got %d documents, want %d", len(snaps), tt.wantCount)
			}
		})
		t.Run(tt.name+"/count", func(t *testing.T) {
			res, err := tt.q.NewAggregationQuery().WithCount("n").Get(ctx)
			check(t, err)
			if err == nil {
				if n := res["n"]; n != nil && n.(interface{ GetIntegerValue() int64 }).GetIntegerValue() != int64(tt.wantCount) {
					t.Errorf("count = %v, want %d", n, tt.wantCount)
				}
			}
		})
		t.Run(tt.name+"/explain", func(t *testing.T) {
			it := tt.q.WithRunOptions(firestore.ExplainOptions{}).Documents(ctx)
			_, err := it.GetAll()
			check(t, err)
		})
	}
}

func TestMissingIndexAggregations(t *testing.T) {
	srv := startIndexed(t)
	c := newClientFor(t, srv, testProject(t))
	ctx := context.Background()
	seed(t, c, map[string]map[string]any{"cities/sf": {"country": "USA", "population": 860000, "blob": 3}})
	cities := c.Collection("cities")
	byCountry := cities.Where("country", "==", "USA")
	byPopulation := cities.Where("population", ">", 0)
	tests := []struct {
		name string
		aq   *firestore.AggregationQuery
		want codes.Code
	}{
		{"sum of an indexed field", cities.NewAggregationQuery().WithSum("population", "s"), codes.OK},
		{"sum over the filtered field", byPopulation.NewAggregationQuery().WithAvg("population", "a"), codes.OK},
		{"sum of an exempted field", cities.NewAggregationQuery().WithSum("blob", "s"), codes.FailedPrecondition},
		{"sum with an equality on another field", byCountry.NewAggregationQuery().WithSum("density", "s"), codes.FailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.aq.Get(ctx)
			if status.Code(err) != tt.want {
				t.Errorf("err = %v, want code %v", err, tt.want)
			}
		})
	}
}

// An invalid query stays INVALID_ARGUMENT with the index check on.
func TestIndexCheckKeepsInvalidArgument(t *testing.T) {
	srv := startIndexed(t)
	c := newClientFor(t, srv, testProject(t))
	// Eleven NOT_IN values are too many; the query would need a composite
	// index too, but validation comes first.
	q := c.Collection("cities").Where("country", "==", "USA").Where("density", "not-in", []any{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})
	_, err := q.Documents(context.Background()).GetAll()
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("err = %v, want INVALID_ARGUMENT", err)
	}
}

// With the check on, Query Explain reports the declared index it uses.
func TestExplainReportsDeclaredIndex(t *testing.T) {
	srv := startIndexed(t)
	c := newClientFor(t, srv, testProject(t))
	ctx := context.Background()
	q := c.Collection("cities").Where("country", "==", "USA").Where("state", "==", "CA").OrderBy("population", firestore.Desc)
	it := q.WithRunOptions(firestore.ExplainOptions{}).Documents(ctx)
	if _, err := it.GetAll(); err != nil {
		t.Fatalf("GetAll: %v", err)
	}
	m, err := it.ExplainMetrics()
	if err != nil {
		t.Fatalf("ExplainMetrics: %v", err)
	}
	want := planOf("Collection", "(country ASC, population DESC, __name__ DESC)", "Collection", "(state ASC, population DESC, __name__ DESC)")
	if diff := cmp.Diff(want, m.PlanSummary); diff != "" {
		t.Errorf("plan summary (-want +got):\n%s", diff)
	}
}

func TestParseIndexConfigRejects(t *testing.T) {
	tests := map[string]string{
		"not json":            `{`,
		"no collection group": `{"indexes":[{"fields":[{"fieldPath":"a","order":"ASCENDING"}]}]}`,
		"bad scope":           `{"indexes":[{"collectionGroup":"c","queryScope":"DATABASE","fields":[{"fieldPath":"a","order":"ASCENDING"}]}]}`,
		"bad order":           `{"indexes":[{"collectionGroup":"c","fields":[{"fieldPath":"a","order":"UP"}]}]}`,
		"order and array":     `{"indexes":[{"collectionGroup":"c","fields":[{"fieldPath":"a","order":"ASCENDING","arrayConfig":"CONTAINS"}]}]}`,
		"bad field path":      `{"indexes":[{"collectionGroup":"c","fields":[{"fieldPath":"a..b","order":"ASCENDING"}]}]}`,
		"name not last":       `{"indexes":[{"collectionGroup":"c","fields":[{"fieldPath":"__name__","order":"ASCENDING"},{"fieldPath":"a","order":"ASCENDING"}]}]}`,
		"override no field":   `{"fieldOverrides":[{"collectionGroup":"c","indexes":[]}]}`,
		"override bad index":  `{"fieldOverrides":[{"collectionGroup":"c","fieldPath":"a","indexes":[{"order":"SIDEWAYS"}]}]}`,
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseIndexConfig([]byte(data)); err == nil {
				t.Errorf("ParseIndexConfig(%s) succeeded, want an error", data)
			}
		})
	}
}

func TestLoadIndexConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "firestore.indexes.json")
	if err := os.WriteFile(path, []byte(testIndexes), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadIndexConfig(path)
	if err != nil {
		t.Fatalf("LoadIndexConfig: %v", err)
	}
	if len(cfg.Indexes) != 4 || len(cfg.FieldOverrides) != 4 {
		t.Errorf("loaded %d indexes and %d overrides, want 4 and 4", len(cfg.Indexes), len(cfg.FieldOverrides))
	}
	if _, err := LoadIndexConfig(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("LoadIndexConfig of a missing file succeeded")
	}
}

// A listener on a query without its index fails as in Firestore, and one
// on a served query works on the same server.
func TestMissingIndexListen(t *testing.T) {
	srv := startIndexed(t)
	c := newClientFor(t, srv, testProject(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seed(t, c, map[string]map[string]any{"cities/sf": {"country": "USA", "population": 860000}})
	tests := []struct {
		name string
		q    firestore.Query
		want codes.Code
	}{
		{"served", c.Collection("cities").Where("country", "==", "USA").OrderBy("population", firestore.Desc), codes.OK},
		{"missing", c.Collection("cities").Where("country", "==", "USA").OrderBy("population", firestore.Asc), codes.FailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			it := tt.q.Snapshots(ctx)
			defer it.Stop()
			snap, err := it.Next()
			if status.Code(err) != tt.want {
				t.Fatalf("Next: err = %v, want code %v", err, tt.want)
			}
			if err == nil && snap.Size != 1 {
				t.Errorf("snapshot has %d documents, want 1", snap.Size)
			}
		})
	}
}
