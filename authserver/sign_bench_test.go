package authserver

import "testing"

// BenchmarkIDTokenSignature is the signature of an ID token of each
// algorithm an app may choose, as idToken signs it (a go-jose signer made
// once per key, a payload of an ID token's size): what bounds the RS256
// code exchanges of bench/oauth.
//
//	go test ./authserver/ -run '^$' -bench IDTokenSignature -benchtime 2s
func BenchmarkIDTokenSignature(b *testing.B) {
	payload := []byte(`{"iss":"https://help.example.com","sub":"42","aud":["valet-demo-app"],"exp":1795000000,` +
		`"iat":1794996400,"auth_time":1794996000,"nonce":"n-0123456789","amr":["pwd"],"azp":"valet-demo-app",` +
		`"client_id":"valet-demo-app","at_hash":"0123456789abcdefghijkl","email":"olivia@acme.example",` +
		`"email_verified":true,"name":"Olivia Owner"}`)
	for _, alg := range algorithms {
		b.Run(string(alg), func(b *testing.B) {
			private, err := generate(alg)
			if err != nil {
				b.Fatal(err)
			}
			k := &signingKey{id: "bench", alg: alg, private: private}
			if k.signer, err = newJWTSigner(k); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				jws, err := k.signer.Sign(payload)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := jws.CompactSerialize(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
