package auth_test

import (
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/haipfabric/haipfabric/auth"
)

func Example() {
	secret := []byte("an example secret of at least 32 bytes")

	signer, err := auth.NewHMACSigner(secret)
	if err != nil {
		panic(err)
	}
	token, err := signer.Mint(auth.MintOptions{Subject: "alice", TTL: time.Hour, Sessions: []string{"s1"}})
	if err != nil {
		panic(err)
	}

	verifier, err := auth.NewVerifier(auth.Config{Secret: secret})
	if err != nil {
		panic(err)
	}
	r := httptest.NewRequest("GET", "/ws?token="+token, nil)
	id, err := verifier.VerifyRequest(r)
	if err != nil {
		panic(err)
	}
	fmt.Println(id.Subject, id.Role, id.AllowsSession("s1"), id.AllowsSession("s2"))

	_, err = verifier.Verify("eyJhbGciOiJub25lIn0.e30.")
	fmt.Println(auth.ReasonOf(err))

	_, err = verifier.VerifyRequest(httptest.NewRequest("GET", "/ws", nil))
	fmt.Println(auth.ReasonOf(err))
	// Output:
	// alice user true false
	// algorithm_not_allowed
	// missing_token
}
