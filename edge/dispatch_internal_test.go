package edge

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// recorder is a carrier that notes what the dispatcher asked of it.
type recorder struct {
	replies []*haip.Envelope
	hellos  int
	replays []haip.ReplayRequestPayload
	flows   []flowMsg
}

func (r *recorder) reply(env *haip.Envelope) *haip.Error {
	r.replies = append(r.replies, env)
	return nil
}
func (r *recorder) hello(context.Context, inbound) *haip.Error { r.hellos++; return nil }
func (r *recorder) replay(_ context.Context, _ inbound, p haip.ReplayRequestPayload) *haip.Error {
	r.replays = append(r.replays, p)
	return nil
}
func (r *recorder) flow(_ context.Context, _ inbound, f flowMsg) *haip.Error {
	r.flows = append(r.flows, f)
	return nil
}
func (r *recorder) stored(streams.Appended) {}

// The dispatch table sends each control type to its handler, with no
// JetStream involved; what it does not route is stored.
func TestDispatchRoutes(t *testing.T) {
	s := &Server{}
	user := auth.Identity{Subject: "alice", Role: auth.RoleUser}
	env := func(typ haip.Type, payload any) inbound {
		t.Helper()
		e, err := haip.New("s1", haip.ChannelSystem, typ, payload)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := haip.Encode(e)
		return inbound{id: user, session: "s1", env: e, data: b}
	}
	r := &recorder{}
	ctx := context.Background()
	if herr := s.dispatch(ctx, env(haip.TypePing, haip.PingPayload{Nonce: "n1"}), r); herr != nil || len(r.replies) != 1 || r.replies[0].Type != haip.TypePong {
		t.Fatalf("PING: %v, replies %v", herr, r.replies)
	}
	var pong haip.PongPayload
	if err := json.Unmarshal(r.replies[0].Payload, &pong); err != nil || pong.Nonce != "n1" {
		t.Fatalf("PONG payload %s", r.replies[0].Payload)
	}
	if herr := s.dispatch(ctx, env(haip.TypeHAI, haip.HelloPayload{HaipVersion: haip.Version, AcceptMajor: []int{haip.Major}, AcceptEvents: haip.AllTypes()}), r); herr != nil || r.hellos != 1 {
		t.Fatalf("HAI: %v, hellos %d", herr, r.hellos)
	}
	if herr := s.dispatch(ctx, env(haip.TypeReplayRequest, haip.ReplayRequestPayload{FromSeq: 3}), r); herr != nil || len(r.replays) != 1 || r.replays[0].FromSeq != 3 {
		t.Fatalf("REPLAY_REQUEST: %v, %v", herr, r.replays)
	}
	n := int64(5)
	if herr := s.dispatch(ctx, env(haip.TypeFlowUpdate, haip.FlowUpdatePayload{Channel: haip.ChannelAgent, AddMessages: &n}), r); herr != nil || len(r.flows) != 1 || r.flows[0].msgs != 5 {
		t.Fatalf("FLOW_UPDATE: %v, %v", herr, r.flows)
	}
	if herr := s.dispatch(ctx, env(haip.TypePauseChannel, haip.ChannelControlPayload{Channel: "NOPE"}), r); herr == nil || herr.Code != haip.CodeProtocolViolation {
		t.Fatalf("PAUSE_CHANNEL of an unknown channel: %v", herr)
	}
	if herr := s.dispatch(ctx, env(haip.TypePong, haip.PongPayload{}), r); herr != nil {
		t.Fatalf("PONG: %v", herr)
	}

	// What reads leaves no trace: it may not create a session.
	agent := auth.RoleAgent
	for _, tc := range []struct {
		role  auth.Role
		typ   haip.Type
		reads bool
	}{
		{auth.RoleUser, haip.TypePing, true}, {auth.RoleUser, haip.TypeReplayRequest, true},
		{auth.RoleUser, haip.TypeFlowUpdate, true}, {auth.RoleUser, haip.TypeError, true},
		{auth.RoleUser, haip.TypeToolList, true}, {agent, haip.TypeToolList, false},
		{auth.RoleUser, haip.TypeHAI, false}, {auth.RoleUser, haip.TypeTextMessageStart, false},
		{auth.RoleUser, haip.TypeToolCall, false}, {auth.RoleUser, haip.TypeRunCancel, false},
	} {
		if got := readsOnly(tc.role, tc.typ); got != tc.reads {
			t.Errorf("readsOnly(%s, %s) = %v, want %v", tc.role, tc.typ, got, tc.reads)
		}
	}
	for typ := range routes {
		if !typ.Known() {
			t.Errorf("route for unknown type %s", typ)
		}
	}
}
