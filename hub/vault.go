package hub

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/valethq/valet"
)

// Vault seals connection secrets with AES-256-GCM. The first key seals;
// every key opens, so that after a key change the old key can stay until
// RotateKey has resealed everything.
type Vault struct {
	current string
	keys    map[string]cipher.AEAD
}

// MinKeyLength is the shortest VALET_HUB_KEY accepted. Keys are stretched
// with HKDF, so any high-entropy string of this length will do.
const MinKeyLength = 32

// NewVault builds a vault from keys (VALET_HUB_KEY first, then any old
// keys still needed to open existing secrets).
func NewVault(keys ...string) (*Vault, error) {
	if len(keys) == 0 {
		return nil, errors.New("hub: a vault needs a key (VALET_HUB_KEY)")
	}
	v := &Vault{keys: make(map[string]cipher.AEAD)}
	for i, k := range keys {
		if len(k) < MinKeyLength {
			return nil, fmt.Errorf("hub: vault keys must be at least %d bytes", MinKeyLength)
		}
		raw, err := valet.DeriveKey([]byte(k), "hub vault")
		if err != nil {
			return nil, err
		}
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(raw)
		id := hex.EncodeToString(sum[:4])
		v.keys[id] = aead
		if i == 0 {
			v.current = id
		}
	}
	return v, nil
}

// KeyID names the key that seals: a hash prefix, never the key itself.
func (v *Vault) KeyID() string { return v.current }

// Which secret a sealed value holds is bound into it as associated data,
// so a sealed refresh token cannot be passed off as an access token.
const (
	fieldAccess  = "access"
	fieldRefresh = "refresh"
	fieldWebhook = "webhook"
)

func (v *Vault) seal(field, plaintext string) []byte {
	if plaintext == "" {
		return nil
	}
	aead := v.keys[v.current]
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce)
	return aead.Seal(nonce, nonce, []byte(plaintext), []byte(field))
}

// ErrUnsealable is what Open returns for secrets this hub's keys do not
// open.
var ErrUnsealable = errors.New("hub: cannot decrypt the stored secrets")

func (v *Vault) open(keyID, field string, sealed []byte) (string, error) {
	if len(sealed) == 0 {
		return "", nil
	}
	aead, ok := v.keys[keyID]
	if !ok {
		return "", fmt.Errorf("%w: they are sealed with key %s, which this hub does not have (VALET_HUB_KEY changed without rotate-key?)", ErrUnsealable, keyID)
	}
	if len(sealed) < aead.NonceSize() {
		return "", fmt.Errorf("%w: sealed secret too short", ErrUnsealable)
	}
	b, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(field))
	if err != nil {
		return "", fmt.Errorf("%w: the sealed %s token does not open: %w", ErrUnsealable, field, err)
	}
	return string(b), nil
}

// Secrets are a connection's secrets in the clear. They live only in
// memory; String keeps them out of logs and pages.
type Secrets struct {
	AccessToken   string
	RefreshToken  string
	WebhookSecret string
}

func (Secrets) String() string               { return "hub.Secrets{redacted}" }
func (Secrets) GoString() string             { return "hub.Secrets{redacted}" }
func (s Secrets) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }

// Seal seals s under the current key.
func (v *Vault) Seal(s Secrets) valet.ConnectionSecrets {
	return valet.ConnectionSecrets{KeyID: v.current,
		AccessToken:   v.seal(fieldAccess, s.AccessToken),
		RefreshToken:  v.seal(fieldRefresh, s.RefreshToken),
		WebhookSecret: v.seal(fieldWebhook, s.WebhookSecret)}
}

// SealWebhookSecret seals a webhook signing secret alone, under the current key.
func (v *Vault) SealWebhookSecret(secret string) []byte { return v.seal(fieldWebhook, secret) }

// Open opens what Seal sealed, with whichever key sealed it.
func (v *Vault) Open(c valet.ConnectionSecrets) (Secrets, error) {
	var s Secrets
	var err error
	if s.AccessToken, err = v.open(c.KeyID, fieldAccess, c.AccessToken); err != nil {
		return Secrets{}, err
	}
	if s.RefreshToken, err = v.open(c.KeyID, fieldRefresh, c.RefreshToken); err != nil {
		return Secrets{}, err
	}
	if s.WebhookSecret, err = v.open(c.KeyID, fieldWebhook, c.WebhookSecret); err != nil {
		return Secrets{}, err
	}
	return s, nil
}

// Reseal opens c and seals it again under the current key (key rotation).
func (v *Vault) Reseal(c valet.ConnectionSecrets) (valet.ConnectionSecrets, error) {
	if c.KeyID == v.current {
		return c, nil
	}
	s, err := v.Open(c)
	if err != nil {
		return valet.ConnectionSecrets{}, err
	}
	return v.Seal(s), nil
}
