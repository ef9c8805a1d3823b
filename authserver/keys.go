package authserver

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/valethq/valet"
)

// signingKey is a decrypted ID token signing key.
type signingKey struct {
	id      string
	alg     jose.SignatureAlgorithm
	private crypto.Signer
	signer  jose.Signer // of ID tokens
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return k.alg }
func (k *signingKey) Key() any                                    { return k.private }
func (k *signingKey) ID() string                                  { return k.id }

// publicKey is a key of the JWKS.
type publicKey struct{ k *signingKey }

func (p publicKey) ID() string                         { return p.k.id }
func (p publicKey) Algorithm() jose.SignatureAlgorithm { return p.k.alg }
func (p publicKey) Use() string                        { return "sig" }
func (p publicKey) Key() any                           { return p.k.private.Public() }

var _ op.SigningKey = (*signingKey)(nil)
var _ op.Key = publicKey{}

// keyring holds the signing keys: the newest unretired key of each
// algorithm signs; every stored key is published.
type keyring struct {
	store valet.OAuthStore
	seal  []byte

	clock valet.Clock

	mu        sync.RWMutex
	signing   map[jose.SignatureAlgorithm]*signingKey
	all       []*signingKey
	loaded    time.Time
	reloading atomic.Bool
}

var algorithms = []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA}

func generate(alg jose.SignatureAlgorithm) (crypto.Signer, error) {
	switch alg {
	case jose.RS256:
		return rsa.GenerateKey(rand.Reader, 2048)
	case jose.ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.EdDSA:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("authserver: unsupported algorithm %s", alg)
}

// createKey generates, seals and stores a new key for alg.
func createKey(ctx context.Context, store valet.OAuthStore, seal []byte, alg jose.SignatureAlgorithm) (*valet.SigningKey, error) {
	priv, err := generate(alg)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	sealed, err := valet.SealKey(seal, der)
	if err != nil {
		return nil, err
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	k := &valet.SigningKey{ID: hex.EncodeToString(id), Algorithm: string(alg), Sealed: sealed}
	return k, store.CreateSigningKey(ctx, k)
}

// RotateKeys makes a new signing key for every algorithm and retires the
// keys that signed until now. Running nodes publish the new keys within
// KeyReloadInterval and sign with them once they are KeyPublishDelay old,
// so an app never gets an ID token whose key it cannot find; until then
// the retired keys go on signing. Retired keys stay in the JWKS for
// RetiredKeyOverlap, so ID tokens they signed still verify.
func RotateKeys(ctx context.Context, store valet.OAuthStore, secret []byte) ([]valet.SigningKey, error) {
	seal, err := valet.DeriveKey(secret, "signing keys")
	if err != nil {
		return nil, err
	}
	old, err := store.ListSigningKeys(ctx)
	if err != nil {
		return nil, err
	}
	for _, k := range old {
		if _, err := valet.OpenKey(seal, k.Sealed); err != nil {
			return nil, fmt.Errorf("authserver: signing key %s does not open with this VALET_SECRET: %w", k.ID, err)
		}
	}
	var created []valet.SigningKey
	for _, alg := range algorithms {
		k, err := createKey(ctx, store, seal, alg)
		if err != nil {
			return nil, err
		}
		created = append(created, *k)
	}
	for _, k := range old {
		if k.RetiredDatetime == nil {
			if err := store.RetireSigningKey(ctx, k.ID); err != nil {
				return nil, err
			}
		}
	}
	return created, nil
}

// Key rotation timing.
const (
	// KeyReloadInterval is how often a node rereads the stored keys.
	KeyReloadInterval = time.Minute
	// KeyPublishDelay is how long a new key is published before it signs:
	// every node has reloaded it by then.
	KeyPublishDelay = 2 * KeyReloadInterval
	// RetiredKeyOverlap is how long a retired key stays published: longer
	// than any ID token it signed lives (it signs for up to
	// KeyPublishDelay after its retirement).
	RetiredKeyOverlap = KeyPublishDelay + idTokenLifetime + 5*time.Minute
)

const idTokenLifetime = time.Hour

// load reads the stored keys, creating a key for each algorithm that has
// none (on first start).
func (kr *keyring) load(ctx context.Context) error {
	stored, err := kr.store.ListSigningKeys(ctx)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, k := range stored {
		if k.RetiredDatetime == nil {
			have[k.Algorithm] = true
		}
	}
	created := false
	for _, alg := range algorithms {
		if !have[string(alg)] {
			if _, err := createKey(ctx, kr.store, kr.seal, alg); err != nil {
				return err
			}
			created = true
		}
	}
	if created {
		if stored, err = kr.store.ListSigningKeys(ctx); err != nil {
			return err
		}
	}
	now := kr.clock.Now()
	signing := map[jose.SignatureAlgorithm]*signingKey{}
	var all []*signingKey
	for _, k := range stored { // newest first
		if k.RetiredDatetime != nil && now.Sub(*k.RetiredDatetime) > RetiredKeyOverlap {
			continue
		}
		der, err := valet.OpenKey(kr.seal, k.Sealed)
		if err != nil {
			return fmt.Errorf("authserver: signing key %s does not open with this VALET_SECRET: %w", k.ID, err)
		}
		priv, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			return err
		}
		signer, ok := priv.(crypto.Signer)
		if !ok {
			return fmt.Errorf("authserver: signing key %s is not a signer", k.ID)
		}
		sk := &signingKey{id: k.ID, alg: jose.SignatureAlgorithm(k.Algorithm), private: signer}
		if sk.signer, err = newJWTSigner(sk); err != nil {
			return fmt.Errorf("authserver: signing key %s: %w", k.ID, err)
		}
		all = append(all, sk)
		// The newest key published long enough signs, retired or not: a
		// rotation's keys wait for every node to publish them.
		if signing[sk.alg] == nil && now.Sub(k.CreatedDatetime) >= KeyPublishDelay {
			signing[sk.alg] = sk
		}
	}
	// On first start every key is new: it signs at once, as no app can
	// have fetched a key set without it.
	for _, sk := range slices.Backward(all) {
		if signing[sk.alg] == nil {
			signing[sk.alg] = sk
		}
	}
	kr.mu.Lock()
	kr.signing, kr.all, kr.loaded = signing, all, now
	kr.mu.Unlock()
	return nil
}

// maybeReload rereads the keys in the background once KeyReloadInterval
// has passed, so a rotation reaches every node without a restart.
func (kr *keyring) maybeReload() {
	kr.mu.RLock()
	due := kr.clock.Now().Sub(kr.loaded) > KeyReloadInterval
	kr.mu.RUnlock()
	if !due || !kr.reloading.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer kr.reloading.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := kr.load(ctx); err != nil {
			slog.Error("authserver: reloading signing keys", "err", err)
		}
	}()
}

func (kr *keyring) signer(alg string) (*signingKey, error) {
	kr.maybeReload()
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	if k := kr.signing[jose.SignatureAlgorithm(alg)]; k != nil {
		return k, nil
	}
	if k := kr.signing[jose.RS256]; k != nil {
		return k, nil
	}
	return nil, fmt.Errorf("authserver: no signing key for %s", alg)
}

func (kr *keyring) public() []op.Key {
	kr.maybeReload()
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	out := make([]op.Key, len(kr.all))
	for i, k := range kr.all {
		out[i] = publicKey{k}
	}
	return out
}
