package authserver

import (
	"context"
	"encoding/json"
	"strconv"

	"github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/valethq/valet"
)

// idTokenClaims are the claims of an ID token valet issues (OpenID Connect
// Core §2 and §5.1). The library's op.CreateIDToken makes the same token,
// but builds a new signer for each one and marshals its claims three
// times to merge them through a map; this way a code exchange spends a
// few µs less (the signature itself is most of an ID token's cost).
type idTokenClaims struct {
	Issuer          string   `json:"iss"`
	Subject         string   `json:"sub"`
	Audience        []string `json:"aud"`
	Expiry          int64    `json:"exp"`
	IssuedAt        int64    `json:"iat"`
	AuthTime        int64    `json:"auth_time,omitempty"`
	Nonce           string   `json:"nonce,omitempty"`
	AMR             []string `json:"amr"`
	AuthorizedParty string   `json:"azp"`
	ClientID        string   `json:"client_id"`
	AccessTokenHash string   `json:"at_hash,omitempty"`
	Email           string   `json:"email,omitempty"`
	EmailVerified   bool     `json:"email_verified,omitempty"`
	Name            string   `json:"name,omitempty"`
}

// idToken signs the ID token of a token answer for the app's algorithm:
// the user's identity claims follow the granted scopes, at_hash binds it
// to the access token beside it.
func (s *Server) idToken(ctx context.Context, clientID, alg string, issued *valet.IssuedTokens) (string, error) {
	key, err := s.keys.signer(alg)
	if err != nil {
		return "", err
	}
	now := s.clock.Now()
	claims := idTokenClaims{
		Issuer:          s.issuer,
		Subject:         strconv.FormatInt(issued.UserID, 10),
		Audience:        []string{clientID},
		Expiry:          now.Add(idTokenLifetime).Unix(),
		IssuedAt:        now.Unix(),
		Nonce:           issued.Nonce,
		AMR:             []string{"pwd"},
		AuthorizedParty: clientID,
		ClientID:        clientID,
	}
	if !issued.AuthTime.IsZero() {
		claims.AuthTime = issued.AuthTime.Unix()
	}
	if claims.AccessTokenHash, err = oidc.ClaimHash(issued.AccessToken, key.alg); err != nil {
		return "", err
	}
	if issued.Scopes.Has(valet.ScopeEmail) || issued.Scopes.Has(valet.ScopeProfile) {
		user := &valet.User{ID: issued.UserID, Email: issued.UserEmail, Name: issued.UserName}
		if user.Email == "" {
			if user, err = s.store.FindUserByID(ctx, issued.UserID); err != nil {
				return "", err
			}
		}
		var info oidc.UserInfo
		setUserClaims(&info, user, issued.Scopes)
		claims.Email, claims.EmailVerified, claims.Name = info.Email, bool(info.EmailVerified), info.Name
	}
	payload, err := json.Marshal(&claims)
	if err != nil {
		return "", err
	}
	jws, err := key.signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// newJWTSigner is the signer of k's ID tokens, made once per key: a
// go-jose signer may sign concurrently.
func newJWTSigner(k *signingKey) (jose.Signer, error) {
	return jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: &jose.JSONWebKey{Key: k.private, KeyID: k.id}},
		(&jose.SignerOptions{}).WithType("JWT"))
}
