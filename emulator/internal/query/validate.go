package query

import (
	"math"
	"strings"
	"unicode/utf8"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Firestore limits on documents and names.
const (
	// MaxDocumentSize is the largest storage size of a document, in bytes.
	MaxDocumentSize = 1 << 20
	// MaxValueBytes is the largest string or bytes value, in bytes.
	MaxValueBytes = 1<<20 - 89
	// MaxDepth is the deepest nesting of maps and arrays in a document.
	MaxDepth = 20
	// MaxIDBytes is the longest collection id, document id or field name.
	MaxIDBytes = 1500
	// MaxNameBytes is the longest document name, counted after
	// ".../documents/".
	MaxNameBytes = 6 << 10
	// MaxCollectionDepth is the most collections on the path to a document
	// (a top-level collection and its nested subcollections).
	MaxCollectionDepth = 100
	// MaxFieldPathBytes is the longest field path: the field names from the
	// top of the document down to the field, joined with dots.
	MaxFieldPathBytes = 1500
)

// ValidateName checks that name is a document name
// "projects/{project}/databases/{database}/documents/{collection}/{id}[/{collection}/{id}...]"
// whose collection ids and document ids are valid UTF-8, non-empty, at most
// 1,500 bytes, not "." or "..", and do not match __.*__ (except numeric
// document ids, __id<int64>__, which Cloud Firestore accepts); the part after
// "documents/" is at most 6 KiB and crosses at most 100 collections. It
// returns an InvalidArgument status error describing the first problem.
func ValidateName(name string) error {
	_, path, err := splitName(name)
	if err != nil {
		return err
	}
	if len(path) == 0 || len(path)%2 != 0 {
		return status.Errorf(codes.InvalidArgument, "document name %q: a document path needs an even, non-zero number of segments (collection/document/...)", name)
	}
	return nil
}

// splitName splits a document or database-root resource name into its root
// ("projects/p/databases/d/documents") and the path segments after it,
// checking every segment.
func splitName(name string) (root string, path []string, err error) {
	parts := strings.Split(name, "/")
	if len(parts) < 5 || parts[0] != "projects" || parts[1] == "" || parts[2] != "databases" || parts[3] == "" || parts[4] != "documents" {
		return "", nil, status.Errorf(codes.InvalidArgument, "resource name %q: must start with projects/{project_id}/databases/{database_id}/documents", name)
	}
	root = strings.Join(parts[:5], "/")
	path = parts[5:]
	if rest := len(name) - len(root) - 1; rest > MaxNameBytes {
		return "", nil, status.Errorf(codes.InvalidArgument, "resource name %.100q...: the path after documents/ is %d bytes, more than the maximum of %d bytes (6 KiB)", name, rest, MaxNameBytes)
	}
	if depth := (len(path) + 1) / 2; depth > MaxCollectionDepth {
		return "", nil, status.Errorf(codes.InvalidArgument, "resource name %.100q...: %d nested collections exceed the maximum depth of %d", name, depth, MaxCollectionDepth)
	}
	for i, seg := range path {
		kind := "collection id"
		if i%2 == 1 {
			kind = "document id"
			if _, ok := numericID(seg); ok {
				continue
			}
		}
		if err := validateID(seg); err != nil {
			return "", nil, status.Errorf(codes.InvalidArgument, "resource name %q: %s %q %s", name, kind, seg, err.Error())
		}
	}
	return root, path, nil
}

type idError string

func (e idError) Error() string { return string(e) }

func validateID(id string) error {
	switch {
	case id == "":
		return idError("is empty")
	case !utf8.ValidString(id):
		return idError("is not valid UTF-8")
	case len(id) > MaxIDBytes:
		return idError("is longer than 1500 bytes")
	case id == "." || id == "..":
		return idError("cannot be '.' or '..'")
	case isReserved(id):
		return idError("is reserved (matches __.*__; only document ids of the form __id<int64>__ are allowed)")
	}
	return nil
}

// isReserved reports whether s matches __.*__.
func isReserved(s string) bool {
	return len(s) >= 4 && strings.HasPrefix(s, "__") && strings.HasSuffix(s, "__")
}

// ValidateDocument checks a document before it is stored, as Firestore does:
// a valid name (ValidateName); field names non-empty, valid UTF-8, at most
// 1,500 bytes and not matching __.*__ (a vector's "__type__" key excepted);
// every value has a type (null is a type; an unset value is not); arrays do not
// directly contain arrays; maps and arrays nest at most 20 deep (each map or
// array value adds a level, so {a: {b: {}}} has depth 2); strings and bytes
// at most 1,048,487 bytes; timestamps within years 1..9999; geopoints within
// ±90 latitude and ±180 longitude; references are valid document names; and
// a storage size (name plus fields plus 32 bytes, computed with Firestore's
// storage-size rules, see Size) of at most 1 MiB.
func ValidateDocument(doc *firestorepb.Document) error {
	if err := ValidateName(doc.GetName()); err != nil {
		return err
	}
	for k, v := range doc.GetFields() {
		if err := validateField(k, v, []string{k}, 0); err != nil {
			return err
		}
	}
	if size := Size(doc); size > MaxDocumentSize {
		return status.Errorf(codes.InvalidArgument, "document %q: size %d bytes exceeds the maximum of %d bytes (1 MiB)", doc.GetName(), size, MaxDocumentSize)
	}
	return nil
}

func validateField(name string, v *firestorepb.Value, path []string, depth int) error {
	switch {
	case name == "":
		return status.Errorf(codes.InvalidArgument, "field %s: field names cannot be empty", FormatFieldPath(path))
	case !utf8.ValidString(name):
		return status.Errorf(codes.InvalidArgument, "field %s: field names must be valid UTF-8", FormatFieldPath(path))
	case len(name) > MaxIDBytes:
		return status.Errorf(codes.InvalidArgument, "field %s: field names cannot be longer than 1500 bytes", FormatFieldPath(path))
	case isReserved(name):
		return status.Errorf(codes.InvalidArgument, "field %s: field names matching __.*__ are reserved", FormatFieldPath(path))
	case len(path) > 1 && pathBytes(path) > MaxFieldPathBytes:
		return status.Errorf(codes.InvalidArgument, "field %.200s...: the field path is %d bytes, more than the maximum of %d bytes", FormatFieldPath(path), pathBytes(path), MaxFieldPathBytes)
	}
	return validateValue(v, path, depth)
}

func validateValue(v *firestorepb.Value, path []string, depth int) error {
	where := FormatFieldPath(path)
	switch x := v.GetValueType().(type) {
	case nil:
		return status.Errorf(codes.InvalidArgument, "field %s: value has no type set", where)
	case *firestorepb.Value_NullValue, *firestorepb.Value_BooleanValue, *firestorepb.Value_IntegerValue, *firestorepb.Value_DoubleValue:
		return nil
	case *firestorepb.Value_TimestampValue:
		ts := x.TimestampValue
		if !validTimestamp(ts) {
			return status.Errorf(codes.InvalidArgument, "field %s: timestamp must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z", where)
		}
	case *firestorepb.Value_StringValue:
		if len(x.StringValue) > MaxValueBytes {
			return status.Errorf(codes.InvalidArgument, "field %s: string value of %d bytes exceeds the maximum of %d bytes", where, len(x.StringValue), MaxValueBytes)
		}
	case *firestorepb.Value_BytesValue:
		if len(x.BytesValue) > MaxValueBytes {
			return status.Errorf(codes.InvalidArgument, "field %s: bytes value of %d bytes exceeds the maximum of %d bytes", where, len(x.BytesValue), MaxValueBytes)
		}
	case *firestorepb.Value_ReferenceValue:
		if err := ValidateName(x.ReferenceValue); err != nil {
			return status.Errorf(codes.InvalidArgument, "field %s: invalid reference: %s", where, status.Convert(err).Message())
		}
	case *firestorepb.Value_GeoPointValue:
		lat, lng := x.GeoPointValue.GetLatitude(), x.GeoPointValue.GetLongitude()
		if math.IsNaN(lat) || lat < -90 || lat > 90 || math.IsNaN(lng) || lng < -180 || lng > 180 {
			return status.Errorf(codes.InvalidArgument, "field %s: geopoint latitude must be within [-90, 90] and longitude within [-180, 180]", where)
		}
	case *firestorepb.Value_ArrayValue:
		if depth+1 > MaxDepth {
			return status.Errorf(codes.InvalidArgument, "field %s: maps and arrays nest more than %d levels deep", where, MaxDepth)
		}
		for i, e := range x.ArrayValue.GetValues() {
			if _, ok := e.GetValueType().(*firestorepb.Value_ArrayValue); ok {
				return status.Errorf(codes.InvalidArgument, "field %s: an array cannot directly contain another array (element %d)", where, i)
			}
			if err := validateValue(e, path, depth+1); err != nil {
				return err
			}
		}
	case *firestorepb.Value_MapValue:
		if depth+1 > MaxDepth {
			return status.Errorf(codes.InvalidArgument, "field %s: maps and arrays nest more than %d levels deep", where, MaxDepth)
		}
		fields := x.MapValue.GetFields()
		vector := isVectorFields(fields)
		for k, e := range fields {
			sub := append(path[:len(path):len(path)], k)
			if vector && k == vectorTypeKey {
				continue
			}
			if err := validateField(k, e, sub, depth+1); err != nil {
				return err
			}
		}
	default:
		return status.Errorf(codes.InvalidArgument, "field %s: expression values cannot be stored in a document", where)
	}
	return nil
}

// pathBytes is the length of a field path: its field names joined with dots.
func pathBytes(path []string) int {
	n := len(path) - 1
	for _, p := range path {
		n += len(p)
	}
	return n
}

// validTimestamp reports whether ts is within 0001-01-01T00:00:00Z and
// 9999-12-31T23:59:59.999999999Z.
func validTimestamp(ts *timestamppb.Timestamp) bool {
	return ts != nil && ts.GetNanos() >= 0 && ts.GetNanos() <= 999_999_999 && ts.GetSeconds() >= minTimestampSeconds && ts.GetSeconds() <= maxTimestampSeconds
}

// Seconds since the Unix epoch of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
const (
	minTimestampSeconds = -62135596800
	maxTimestampSeconds = 253402300799
)

// Size returns the storage size of a document in bytes by Firestore's
// storage-size rules: the name size (each collection and document id as a
// string, plus 16), plus each field (name as a string plus the value size),
// plus 32. Strings count their UTF-8 bytes plus 1; booleans and null 1;
// integers, doubles and timestamps 8; geopoints 16; bytes their length;
// references their document name size; arrays and maps the sum of their
// contents (map keys as strings); vectors 8 bytes per dimension.
func Size(doc *firestorepb.Document) int {
	return nameSize(doc.GetName()) + fieldsSize(doc.GetFields()) + 32
}

func nameSize(name string) int {
	rest := name
	if i := strings.Index(name, "/documents/"); i >= 0 {
		rest = name[i+len("/documents/"):]
	}
	n := 16
	for seg := range strings.SplitSeq(rest, "/") {
		n += len(seg) + 1
	}
	return n
}

func fieldsSize(fields map[string]*firestorepb.Value) int {
	n := 0
	for k, v := range fields {
		n += len(k) + 1 + valueSize(v)
	}
	return n
}

func valueSize(v *firestorepb.Value) int {
	switch x := v.GetValueType().(type) {
	case *firestorepb.Value_BooleanValue, *firestorepb.Value_NullValue, nil:
		return 1
	case *firestorepb.Value_IntegerValue, *firestorepb.Value_DoubleValue, *firestorepb.Value_TimestampValue:
		return 8
	case *firestorepb.Value_StringValue:
		return len(x.StringValue) + 1
	case *firestorepb.Value_BytesValue:
		return len(x.BytesValue)
	case *firestorepb.Value_ReferenceValue:
		return nameSize(x.ReferenceValue)
	case *firestorepb.Value_GeoPointValue:
		return 16
	case *firestorepb.Value_ArrayValue:
		n := 0
		for _, e := range x.ArrayValue.GetValues() {
			n += valueSize(e)
		}
		return n
	case *firestorepb.Value_MapValue:
		if isVectorFields(x.MapValue.GetFields()) {
			return 8 * len(vectorElements(v))
		}
		return fieldsSize(x.MapValue.GetFields())
	default:
		return 0
	}
}
