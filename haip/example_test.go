package haip_test

import (
	"errors"
	"fmt"

	"github.com/haipfabric/haipfabric/haip"
)

func ExampleDecode() {
	frame := []byte(`{"id":"3f0c8a2e-6a55-4c1b-9c1e-2f4b7d9e1a01","session":"s1","seq":"1753087185000",` +
		`"ts":"1753087185000","channel":"USER","type":"TEXT_MESSAGE_PART",` +
		`"payload":{"message_id":"5d1e0c9b-8a7f-4e6d-b5c4-3a2b1c0d9e8f","text":"Hello"}}`)
	e, err := haip.Decode(frame)
	if err != nil {
		fmt.Println(err)
		return
	}
	var p haip.TextMessagePartPayload
	if err := e.DecodePayload(&p); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(e.Type, e.Seq, p.Text)
	// Output: TEXT_MESSAGE_PART 1753087185000 Hello
}

func ExampleDecode_error() {
	frame := []byte(`{"id":"3f0c8a2e-6a55-4c1b-9c1e-2f4b7d9e1a01","session":"s1","seq":1,"ts":"1",` +
		`"channel":"USER","type":"PING","payload":{}}`)
	_, err := haip.Decode(frame)
	fmt.Println(haip.CodeOf(err))
	fmt.Println(err)

	// The *haip.Error becomes the ERROR reply.
	var he *haip.Error
	if !errors.As(err, &he) {
		return
	}
	reply, _ := haip.New("s1", haip.ChannelSystem, haip.TypeError, he.Payload())
	fmt.Println(string(reply.Payload))
	// Output:
	// PROTOCOL_VIOLATION
	// haip: PROTOCOL_VIOLATION: field seq: uint64str must be a JSON string, not 1
	// {"code":"PROTOCOL_VIOLATION","message":"field seq: uint64str must be a JSON string, not 1","related_id":"3f0c8a2e-6a55-4c1b-9c1e-2f4b7d9e1a01","detail":{"field":"seq","schema":"/haip/schema/envelope.json"}}
}

func ExampleEncode() {
	e := &haip.Envelope{
		ID:      "3f0c8a2e-6a55-4c1b-9c1e-2f4b7d9e1a01",
		Session: "s1",
		Seq:     7,
		TS:      1753087185000,
		Channel: haip.ChannelSystem,
		Type:    haip.TypePong,
		Payload: []byte(`{ "nonce": "n-1" }`),
	}
	b, err := haip.Encode(e)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(b))
	// Output: {"id":"3f0c8a2e-6a55-4c1b-9c1e-2f4b7d9e1a01","session":"s1","seq":"7","ts":"1753087185000","channel":"SYSTEM","type":"PONG","payload":{"nonce":"n-1"}}
}
