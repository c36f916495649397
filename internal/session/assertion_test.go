package session

import (
	"encoding/json"
	"errors"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
)

// TestAssertion: the identity assertion carries Pomerium's claims, checks
// against the published key set, and is never taken as a Portcullis token,
// not even by the route it was made for.
func TestAssertion(t *testing.T) {
	for name, k := range map[string]*Keys{"ec": ecKeys(t), "rsa": rsaKeys(t), "derived": derivedKeys(t)} {
		t.Run(name, func(t *testing.T) {
			tok, err := k.IssueAssertion(Assertion{Audience: "app.example.com", Subject: "user-1", Email: "a@example.com",
				Name: "A", Groups: []string{"dev"}, SessionID: "S1"})
			if err != nil {
				t.Fatal(err)
			}
			var set jose.JSONWebKeySet
			if err := json.Unmarshal(k.JWKS(), &set); err != nil {
				t.Fatal(err)
			}
			jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(k.Algorithm())})
			if err != nil {
				t.Fatal(err)
			}
			keys := set.Key(jws.Signatures[0].Header.KeyID)
			if len(keys) != 1 {
				t.Fatalf("the assertion's kid %q is not in the published key set", jws.Signatures[0].Header.KeyID)
			}
			payload, err := jws.Verify(keys[0].Key)
			if err != nil {
				t.Fatalf("the assertion does not verify with the published key: %v", err)
			}
			var got map[string]any
			json.Unmarshal(payload, &got)
			want := map[string]any{
				"iss": "app.example.com", "aud": "app.example.com", "sub": "user-1", "user": "user-1",
				"email": "a@example.com", "name": "A", "groups": []any{"dev"}, "sid": "S1",
				"iat": float64(testNow.Unix()), "exp": float64(testNow.Add(AssertionTTL).Unix()),
			}
			delete(got, "jti")
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
			// An upstream that replays it to Portcullis gets nothing.
			if _, err := k.Verify(tok, "app.example.com", testNow); !errors.Is(err, ErrWrongIssuer) {
				t.Errorf("Verify of an assertion: got %v, want ErrWrongIssuer", err)
			}
		})
	}
	if _, err := ecKeys(t).IssueAssertion(Assertion{}); err == nil {
		t.Error("an assertion without an audience was issued")
	}
}
