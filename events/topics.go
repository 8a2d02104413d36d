package events

import (
	"context"
	"fmt"
	"strings"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// EnsureTopics creates the named topics (ids or full names) that do not
// exist yet. Another instance creating one at the same time is fine.
func EnsureTopics(ctx context.Context, client *pubsub.Client, names ...string) error {
	for _, n := range names {
		name := topicName(client.Project(), n)
		_, err := client.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: name})
		if status.Code(err) == codes.NotFound {
			_, err = client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: name})
			if status.Code(err) == codes.AlreadyExists {
				err = nil
			}
		}
		if err != nil {
			return fmt.Errorf("events.EnsureTopics(%s): %w", name, err)
		}
	}
	return nil
}

// SubscriptionConfig describes a pull subscription EnsureSubscriptions
// creates when it is absent.
type SubscriptionConfig struct {
	// Name is the subscription id or full name.
	Name string
	// Topic is the topic id or full name; it must exist.
	Topic string
	// Ordered delivers messages with the same ordering key one at a time, in
	// publish order.
	Ordered bool
	// AckDeadlineSeconds is the initial ack deadline (the client extends it
	// while a message is being handled); 0 means 60.
	AckDeadlineSeconds int32
}

// EnsureSubscriptions creates the subscriptions that do not exist yet. An
// existing subscription is left as it is.
func EnsureSubscriptions(ctx context.Context, client *pubsub.Client, subs ...SubscriptionConfig) error {
	for _, s := range subs {
		name := subscriptionName(client.Project(), s.Name)
		_, err := client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: name})
		if status.Code(err) == codes.NotFound {
			deadline := s.AckDeadlineSeconds
			if deadline <= 0 {
				deadline = 60
			}
			_, err = client.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
				Name:                  name,
				Topic:                 topicName(client.Project(), s.Topic),
				EnableMessageOrdering: s.Ordered,
				AckDeadlineSeconds:    deadline,
			})
			if status.Code(err) == codes.AlreadyExists {
				err = nil
			}
		}
		if err != nil {
			return fmt.Errorf("events.EnsureSubscriptions(%s): %w", name, err)
		}
	}
	return nil
}

// topicName turns a topic id into its full name; full names pass through.
func topicName(project, n string) string {
	if strings.HasPrefix(n, "projects/") {
		return n
	}
	return "projects/" + project + "/topics/" + n
}

// subscriptionName turns a subscription id into its full name.
func subscriptionName(project, n string) string {
	if strings.HasPrefix(n, "projects/") {
		return n
	}
	return "projects/" + project + "/subscriptions/" + n
}
