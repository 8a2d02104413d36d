package store

import (
	"context"
	"fmt"
	"strings"

	"cloud.google.com/go/firestore"
	apiv1 "cloud.google.com/go/firestore/apiv1"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// Clients are the two Firestore clients a Store uses.
type Clients struct {
	Firestore *firestore.Client
	GAPIC     *apiv1.Client
}

// Close closes both clients.
func (c Clients) Close() error {
	err1 := c.Firestore.Close()
	err2 := c.GAPIC.Close()
	if err1 != nil {
		return err1
	}
	return err2
}

// Dial connects to Firestore for a project: to an emulator at emulatorHost
// (host:port, plain gRPC, no credentials) when it is set, otherwise to Cloud
// Firestore with Application Default Credentials.
func Dial(ctx context.Context, project, emulatorHost string) (Clients, error) {
	var opts []option.ClientOption
	if emulatorHost != "" {
		host := strings.TrimPrefix(emulatorHost, "http://")
		opts = []option.ClientOption{
			option.WithEndpoint(host),
			option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
			option.WithGRPCDialOption(grpc.WithUnaryInterceptor(ownerUnary)),
			option.WithGRPCDialOption(grpc.WithStreamInterceptor(ownerStream)),
		}
	}
	fs, err := firestore.NewClient(ctx, project, opts...)
	if err != nil {
		return Clients{}, fmt.Errorf("store.Dial(%s): %w", project, err)
	}
	gapic, err := apiv1.NewClient(ctx, opts...)
	if err != nil {
		fs.Close()
		return Clients{}, fmt.Errorf("store.Dial(%s): %w", project, err)
	}
	return Clients{Firestore: fs, GAPIC: gapic}, nil
}

// ownerUnary and ownerStream send the emulator's admin credential, as the
// Firestore client does by itself when FIRESTORE_EMULATOR_HOST is set.
func ownerUnary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer owner"), method, req, reply, cc, opts...)
}

func ownerStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer owner"), desc, cc, method, opts...)
}
