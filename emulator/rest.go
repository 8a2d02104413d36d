package emulator

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The REST/JSON mapping of google.firestore.v1.Firestore, served on the
// gRPC port under /v1/ as Cloud Firestore serves it on
// firestore.googleapis.com. Each HTTP request becomes the RPC named by the
// method's google.api.http binding and runs through the same server methods
// and interceptors (counters, faults) as a gRPC call; messages are JSON in
// the proto3 mapping (protojson), errors are Google's JSON error object, and
// the server-streaming methods (batchGet, runQuery, runAggregationQuery)
// answer one JSON array of their responses, written as they are produced.

// restCall is one HTTP request resolved to an RPC.
type restCall struct {
	method string            // RPC name, e.g. "Commit"
	body   string            // "*" (the whole request), "document" or "" (none)
	path   map[string]string // request fields bound from the URL path, by proto name
}

// restDatabaseVerbs are the custom methods on {database}/documents.
var restDatabaseVerbs = map[string]string{
	"batchGet":         "BatchGetDocuments",
	"beginTransaction": "BeginTransaction",
	"commit":           "Commit",
	"rollback":         "Rollback",
	"batchWrite":       "BatchWrite",
	"executePipeline":  "ExecutePipeline",
	"write":            "Write",
	"listen":           "Listen",
}

// restParentVerbs are the custom methods on {parent} (the database's
// documents root or a document).
var restParentVerbs = map[string]string{
	"runQuery":            "RunQuery",
	"runAggregationQuery": "RunAggregationQuery",
	"partitionQuery":      "PartitionQuery",
	"listCollectionIds":   "ListCollectionIds",
}

// restSystemParams are Google's standard query parameters; they select
// transport options, not request fields, and are accepted and ignored.
var restSystemParams = map[string]bool{
	"key": true, "alt": true, "$alt": true, "prettyPrint": true, "fields": true,
	"access_token": true, "oauth_token": true, "quotaUser": true, "userIp": true,
	"callback": true, "$callback": true, "$.xgafv": true, "upload_protocol": true,
	"uploadType": true,
}

var (
	restUnmarshal = protojson.UnmarshalOptions{}
	restMarshal   = protojson.MarshalOptions{}
)

// restRoute resolves an HTTP method and the URL path after "/v1/".
func restRoute(method, p string) (restCall, error) {
	notFound := status.Errorf(codes.NotFound, "the requested URL /v1/%s was not found on this server (%s)", p, method)
	// Every custom method is a POST; in any other request a ':' belongs to
	// a document id.
	verb := ""
	if i := strings.LastIndexByte(p, ':'); method == http.MethodPost && i >= 0 && !strings.Contains(p[i:], "/") {
		v := p[i+1:]
		if restDatabaseVerbs[v] != "" || restParentVerbs[v] != "" {
			verb, p = v, p[:i]
		}
	}
	segs := strings.Split(p, "/")
	if len(segs) < 5 || segs[0] != "projects" || segs[2] != "databases" || segs[4] != "documents" || slices.Contains(segs, "") {
		return restCall{}, notFound
	}
	database := strings.Join(segs[:4], "/")
	rest := segs[5:]
	if verb != "" {
		if rpc := restDatabaseVerbs[verb]; rpc != "" {
			if len(rest) != 0 {
				return restCall{}, notFound
			}
			return restCall{method: rpc, body: "*", path: map[string]string{"database": database}}, nil
		}
		return restCall{method: restParentVerbs[verb], body: "*", path: map[string]string{"parent": p}}, nil
	}
	if len(rest) == 0 {
		return restCall{}, notFound
	}
	parent := strings.Join(segs[:len(segs)-1], "/")
	last := segs[len(segs)-1]
	switch method {
	case http.MethodGet:
		if len(rest)%2 == 0 {
			return restCall{method: "GetDocument", path: map[string]string{"name": p}}, nil
		}
		return restCall{method: "ListDocuments", path: map[string]string{"parent": parent, "collection_id": last}}, nil
	case http.MethodPatch:
		return restCall{method: "UpdateDocument", body: "document", path: map[string]string{"document.name": p}}, nil
	case http.MethodDelete:
		return restCall{method: "DeleteDocument", path: map[string]string{"name": p}}, nil
	case http.MethodPost:
		return restCall{method: "CreateDocument", body: "document", path: map[string]string{"parent": parent, "collection_id": last}}, nil
	}
	return restCall{}, notFound
}

// serveREST answers one REST request.
func (s *Server) serveREST(w http.ResponseWriter, r *http.Request) {
	restCORS(w, r)
	if r.Method == http.MethodOptions {
		w.Header().Set("Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE, OPTIONS")
		if h := r.Header.Get("Access-Control-Request-Headers"); h != "" {
			w.Header().Set("Access-Control-Allow-Headers", h)
		}
		w.Header().Set("Access-Control-Max-Age", "3600")
		w.WriteHeader(http.StatusOK)
		return
	}
	call, err := restRoute(r.Method, strings.TrimPrefix(r.URL.Path, "/v1/"))
	if err != nil {
		writeRESTError(w, err, false)
		return
	}
	// JSON is larger than the binary request the size limit applies to, so
	// the body may be a few times maxRequestBytes; the interceptors check
	// the decoded request against the limit itself.
	body, err := io.ReadAll(io.LimitReader(r.Body, 4*maxRequestBytes+1))
	if err != nil {
		writeRESTError(w, status.Errorf(codes.InvalidArgument, "read request body: %v", err), false)
		return
	}
	if len(body) > 4*maxRequestBytes {
		writeRESTError(w, status.Errorf(codes.InvalidArgument, "request size exceeds the maximum API request size of %d bytes (10 MiB)", maxRequestBytes), false)
		return
	}
	fill := func(m proto.Message) error { return call.fill(m, r.URL.Query(), body) }
	out := restMarshal
	// Google's REST client libraries ask for enums as numbers with
	// $alt=json;enum-encoding=int.
	for _, k := range []string{"$alt", "alt"} {
		if strings.Contains(r.URL.Query().Get(k), "enum-encoding=int") {
			out.UseEnumNumbers = true
		}
	}
	ctx := metadata.NewIncomingContext(r.Context(), restMetadata(r.Header))
	for _, m := range firestorepb.Firestore_ServiceDesc.Methods {
		if m.MethodName != call.method {
			continue
		}
		dec := func(v any) error { return fill(v.(proto.Message)) }
		resp, err := m.Handler(s, ctx, dec, s.restUnaryChain)
		if err != nil {
			writeRESTError(w, err, false)
			return
		}
		b, err := out.Marshal(resp.(proto.Message))
		if err != nil {
			writeRESTError(w, status.Errorf(codes.Internal, "encode response: %v", err), false)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		_, _ = w.Write(b)
		return
	}
	for _, sd := range firestorepb.Firestore_ServiceDesc.Streams {
		if sd.StreamName != call.method {
			continue
		}
		if sd.ClientStreams {
			writeRESTError(w, status.Errorf(codes.Unimplemented, "%s is only available via gRPC or WebChannel (not REST)", call.method), false)
			return
		}
		st := &restStream{ctx: ctx, w: w, fill: fill, out: out}
		info := &grpc.StreamServerInfo{FullMethod: "/google.firestore.v1.Firestore/" + call.method, IsServerStream: true}
		err := s.latencyStream(s, st, info, func(srv any, ss grpc.ServerStream) error {
			return s.streamInterceptor(srv, ss, info, sd.Handler)
		})
		st.finish(err)
		return
	}
	writeRESTError(w, status.Errorf(codes.Unimplemented, "google.firestore.v1.Firestore has no method %s", call.method), false)
}

// restCORS lets pages of any origin call the API, as Cloud Firestore does.
func restCORS(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Add("Vary", "Origin")
}

// restMetadata passes the request's headers on as gRPC metadata, as
// Google's front end does, so the server sees the same call either way.
func restMetadata(h http.Header) metadata.MD {
	md := metadata.MD{}
	for k, v := range h {
		md[strings.ToLower(k)] = v
	}
	return md
}

// fill decodes the request from the body, the query parameters and the
// URL path, in that order, so the path wins.
func (c restCall) fill(m proto.Message, query url.Values, body []byte) error {
	body = bytes.TrimSpace(body)
	switch c.body {
	case "*":
		if len(body) > 0 {
			if err := restUnmarshal.Unmarshal(body, m); err != nil {
				return invalidJSON(err)
			}
		}
	case "document":
		if len(body) > 0 {
			rm := m.ProtoReflect()
			fd := rm.Descriptor().Fields().ByName("document")
			if err := restUnmarshal.Unmarshal(body, rm.Mutable(fd).Message().Interface()); err != nil {
				return invalidJSON(err)
			}
		}
	}
	for k, vs := range query {
		if restSystemParams[k] {
			continue
		}
		if err := setRESTField(m.ProtoReflect(), k, vs); err != nil {
			return err
		}
	}
	for k, v := range c.path {
		if err := setRESTField(m.ProtoReflect(), k, []string{v}); err != nil {
			return err
		}
	}
	return nil
}

var unknownJSONField = regexp.MustCompile(`unknown field "([^"]*)"`)

// invalidJSON words a body that does not decode as Google's front end
// does ("Invalid JSON payload received. Unknown name "x": Cannot find
// field.").
func invalidJSON(err error) error {
	msg := strings.TrimSpace(strings.TrimPrefix(err.Error(), "proto:"))
	if m := unknownJSONField.FindStringSubmatch(msg); m != nil {
		msg = fmt.Sprintf("Unknown name %q: Cannot find field.", m[1])
	}
	return status.Errorf(codes.InvalidArgument, "Invalid JSON payload received. %s", msg)
}

// setRESTField sets the field at a dotted path (JSON or proto names) from
// query parameter values.
func setRESTField(m protoreflect.Message, path string, vals []string) error {
	cannot := func(why string) error {
		return status.Errorf(codes.InvalidArgument, "Invalid JSON payload received. Unknown name %q: Cannot bind query parameter. %s", path, why)
	}
	parts := strings.Split(path, ".")
	for i, part := range parts {
		fields := m.Descriptor().Fields()
		fd := fields.ByJSONName(part)
		if fd == nil {
			fd = fields.ByName(protoreflect.Name(part))
		}
		if fd == nil {
			return cannot(fmt.Sprintf("Field %q could not be found in request message.", part))
		}
		if fd.IsMap() {
			return cannot(fmt.Sprintf("Field %q is a map.", part))
		}
		if i < len(parts)-1 {
			if fd.Message() == nil || fd.IsList() {
				return cannot(fmt.Sprintf("Field %q is not a singular message.", part))
			}
			m = m.Mutable(fd).Message()
			continue
		}
		if fd.IsList() {
			l := m.Mutable(fd).List()
			for _, v := range vals {
				pv, err := restScalar(fd, v, l.NewElement)
				if err != nil {
					return cannot(err.Error())
				}
				l.Append(pv)
			}
			return nil
		}
		if len(vals) != 1 {
			return cannot(fmt.Sprintf("Field %q is not repeated.", part))
		}
		pv, err := restScalar(fd, vals[0], func() protoreflect.Value { return m.NewField(fd) })
		if err != nil {
			return cannot(err.Error())
		}
		m.Set(fd, pv)
	}
	return nil
}

// restScalar parses one query parameter value for field fd.
func restScalar(fd protoreflect.FieldDescriptor, s string, newMsg func() protoreflect.Value) (protoreflect.Value, error) {
	bad := func(err error) (protoreflect.Value, error) {
		return protoreflect.Value{}, fmt.Errorf("Invalid value %q for field %q: %v", s, fd.Name(), err)
	}
	switch fd.Kind() {
	case protoreflect.BoolKind:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return bad(err)
		}
		return protoreflect.ValueOfBool(b), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return bad(err)
		}
		return protoreflect.ValueOfInt32(int32(n)), nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return bad(err)
		}
		return protoreflect.ValueOfInt64(n), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return bad(err)
		}
		return protoreflect.ValueOfUint32(uint32(n)), nil
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return bad(err)
		}
		return protoreflect.ValueOfUint64(n), nil
	case protoreflect.FloatKind:
		f, err := strconv.ParseFloat(s, 32)
		if err != nil {
			return bad(err)
		}
		return protoreflect.ValueOfFloat32(float32(f)), nil
	case protoreflect.DoubleKind:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return bad(err)
		}
		return protoreflect.ValueOfFloat64(f), nil
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(s), nil
	case protoreflect.BytesKind:
		b, err := decodeRESTBytes(s)
		if err != nil {
			return bad(err)
		}
		return protoreflect.ValueOfBytes(b), nil
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByName(protoreflect.Name(s)); ev != nil {
			return protoreflect.ValueOfEnum(ev.Number()), nil
		}
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return bad(errors.New("not a value of the enum"))
		}
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(n)), nil
	case protoreflect.MessageKind, protoreflect.GroupKind:
		// Well-known types (Timestamp, Duration, wrappers) take their JSON
		// string form, e.g. readTime=2024-05-01T10:00:00.123456Z.
		v := newMsg()
		q, _ := json.Marshal(s)
		if err := restUnmarshal.Unmarshal(q, v.Message().Interface()); err != nil {
			return bad(err)
		}
		return v, nil
	}
	return bad(errors.New("unsupported field kind"))
}

// decodeRESTBytes decodes base64 in the standard or URL alphabet, padded
// or not. A '+' decoded to a space by query unescaping is restored.
func decodeRESTBytes(s string) ([]byte, error) {
	s = strings.ReplaceAll(s, " ", "+")
	var firstErr error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		b, err := enc.DecodeString(s)
		if err == nil {
			return b, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}

// restStream is the server side of a server-streaming RPC over REST: it
// hands the decoded request to the handler once and writes the responses
// as the elements of one JSON array.
type restStream struct {
	ctx   context.Context
	w     http.ResponseWriter
	fill  func(proto.Message) error
	out   protojson.MarshalOptions
	recvd bool
	sent  int
}

// SetHeader is a no-op: REST responses carry no gRPC metadata.
func (st *restStream) SetHeader(metadata.MD) error { return nil }

// SendHeader is a no-op: REST responses carry no gRPC metadata.
func (st *restStream) SendHeader(metadata.MD) error { return nil }

// SetTrailer is a no-op: REST responses carry no gRPC metadata.
func (st *restStream) SetTrailer(metadata.MD) {}

// Context returns the HTTP request's context.
func (st *restStream) Context() context.Context { return st.ctx }

// RecvMsg decodes the HTTP request into m the first time, then reports
// the end of the (single-request) stream.
func (st *restStream) RecvMsg(m any) error {
	if st.recvd {
		return io.EOF
	}
	st.recvd = true
	return st.fill(m.(proto.Message))
}

// SendMsg writes one response as the next array element and flushes it.
func (st *restStream) SendMsg(m any) error {
	b, err := st.out.Marshal(m.(proto.Message))
	if err != nil {
		return status.Errorf(codes.Internal, "encode response: %v", err)
	}
	sep := ",\n"
	if st.sent == 0 {
		st.w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		st.w.WriteHeader(http.StatusOK)
		sep = "[\n"
	}
	st.sent++
	if _, err := io.WriteString(st.w, sep); err != nil {
		return err
	}
	if _, err := st.w.Write(b); err != nil {
		return err
	}
	if f, ok := st.w.(http.Flusher); ok {
		f.Flush()
	}
	return nil
}

// finish closes the array. An error before the first response is the HTTP
// status with the error as the only element, as Firestore answers; an
// error after it is a last element holding the error.
func (st *restStream) finish(err error) {
	if err != nil && st.sent == 0 {
		writeRESTError(st.w, err, true)
		return
	}
	if st.sent == 0 {
		st.w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		_, _ = io.WriteString(st.w, "[]")
		return
	}
	if err != nil {
		_, _ = io.WriteString(st.w, ",\n")
		_, _ = st.w.Write(restErrorBody(err))
	}
	_, _ = io.WriteString(st.w, "\n]")
}

// restHTTPStatus maps a gRPC code to its HTTP status, as google.rpc.Code
// documents.
func restHTTPStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return 499
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// restErrorBody is Google's JSON error object for err:
// {"error":{"code":404,"message":"...","status":"NOT_FOUND"}}.
func restErrorBody(err error) []byte {
	st := status.Convert(err)
	if errors.Is(err, context.Canceled) {
		st = status.New(codes.Canceled, err.Error())
	}
	type errorObject struct {
		Code    int               `json:"code"`
		Message string            `json:"message"`
		Status  string            `json:"status"`
		Details []json.RawMessage `json:"details,omitempty"`
	}
	e := errorObject{Code: restHTTPStatus(st.Code()), Message: st.Message(), Status: code.Code(st.Code()).String()}
	for _, d := range st.Proto().GetDetails() {
		if b, err := restMarshal.Marshal(d); err == nil {
			e.Details = append(e.Details, b)
		}
	}
	b, _ := json.Marshal(map[string]errorObject{"error": e})
	return b
}

// writeRESTError answers err with its HTTP status; a streaming method's
// error is wrapped in an array, as Firestore does.
func writeRESTError(w http.ResponseWriter, err error, stream bool) {
	b := restErrorBody(err)
	if stream {
		b = append(append([]byte("[\n"), b...), "\n]"...)
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(restHTTPStatus(status.Convert(err).Code()))
	_, _ = w.Write(b)
}

// restUnaryChain is the gRPC server's unary interceptor chain (latency, then
// counters, faults and limits) for a REST call.
func (s *Server) restUnaryChain(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	return s.latencyUnary(ctx, req, info, func(ctx context.Context, req any) (any, error) {
		return s.unaryInterceptor(ctx, req, info, handler)
	})
}
