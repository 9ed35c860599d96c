package auth

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// maxSecretFileSize bounds how much of a secret file is read; a real one
// holds a few dozen hex digits.
const maxSecretFileSize = 4 << 10

// A secret file holds the HMAC secret as text, read exactly as the
// JWT_SECRET variable is: its bytes (surrounding whitespace ignored) are
// the secret, so JWT_SECRET=$(cat FILE) gives another process the same
// key. A new file holds [MinSecretLen] random bytes written as hex text.

// LoadOrCreateSecret returns the secret stored at path. When no file
// exists there, it creates one with mode 0600 (creating missing parent
// directories with mode 0700) and returns created=true. A file that exists
// but is unreadable, or shorter than MinSecretLen bytes once trimmed, is
// an error: it is never replaced. Concurrent callers, even in other
// processes, agree on one secret: the file appears atomically and only one
// caller reports created.
func LoadOrCreateSecret(path string) (secret []byte, created bool, err error) {
	secret, err = LoadSecret(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return secret, false, err
	}
	raw := make([]byte, MinSecretLen)
	if _, err := rand.Read(raw); err != nil {
		return nil, false, fmt.Errorf("cannot create secret: %w", err)
	}
	secret = []byte(hex.EncodeToString(raw))
	created, err = writeNewFile(path, append(secret, '\n'))
	if err != nil {
		return nil, false, fmt.Errorf("cannot create secret file %s: %w", path, err)
	}
	if !created {
		// Someone else created the file first; theirs is the secret.
		secret, err = LoadSecret(path)
		return secret, false, err
	}
	return secret, true, nil
}

// LoadSecret reads the secret file at path and never creates one. A
// missing file yields an error wrapping fs.ErrNotExist.
func LoadSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read secret file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read secret file %s: %w", path, err)
	}
	if len(data) > maxSecretFileSize {
		return nil, fmt.Errorf("cannot load secret from %s: file is larger than %d bytes", path, maxSecretFileSize)
	}
	// Never echo the file's content: it is a secret, even when malformed.
	secret := bytes.TrimSpace(data)
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("cannot load secret from %s: %d bytes, need at least %d", path, len(secret), MinSecretLen)
	}
	return secret, nil
}

// writeNewFile creates path with mode 0600 holding data, unless it already
// exists, in which case it returns false and leaves it alone. The file is
// written under a temporary name and hard-linked into place, so readers
// never see it half-written; where hard links are unsupported it falls back
// to an exclusive create.
func writeNewFile(path string, data []byte) (bool, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("cannot create directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*") // mode 0600
	if err != nil {
		return false, fmt.Errorf("cannot create temporary file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := writeAndClose(tmp, data); err != nil {
		return false, err
	}
	err = os.Link(tmp.Name(), path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrExist):
		return false, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cannot create file: %w", err)
	}
	if err := writeAndClose(f, data); err != nil {
		os.Remove(path)
		return false, err
	}
	return true, nil
}

// writeAndClose writes data to f, syncs and closes it.
func writeAndClose(f *os.File, data []byte) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", f.Name(), err)
	}
	return nil
}
