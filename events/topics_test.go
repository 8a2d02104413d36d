package events_test

import (
	"context"
	"testing"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/savesync/savesync/events"
)

func TestEnsureTopicsAndSubscriptionsAreIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, client := newPubsub(t)
	for round := range 2 {
		if err := events.EnsureTopics(ctx, client, "t-one", "projects/"+testProject+"/topics/t-two"); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := events.EnsureSubscriptions(ctx, client, events.SubscriptionConfig{Name: "s-one", Topic: "t-one", Ordered: true}); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	for _, name := range []string{"t-one", "t-two"} {
		if _, err := client.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: "projects/" + testProject + "/topics/" + name}); err != nil {
			t.Errorf("topic %s: %v", name, err)
		}
	}
	sub, err := client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: "projects/" + testProject + "/subscriptions/s-one"})
	if err != nil {
		t.Fatal(err)
	}
	if !sub.GetEnableMessageOrdering() || sub.GetTopic() != "projects/"+testProject+"/topics/t-one" || sub.GetAckDeadlineSeconds() != 60 {
		t.Errorf("subscription = %v, want ordered on t-one with a 60 s ack deadline", sub)
	}
	if err := events.EnsureSubscriptions(ctx, client, events.SubscriptionConfig{Name: "s-missing", Topic: "no-such-topic"}); err == nil {
		t.Errorf("a subscription to a missing topic was accepted")
	}
}
