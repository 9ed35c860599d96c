package auth

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func TestLoadOrCreateSecret(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state", "nested", "jwt-secret")

	secret, created, err := LoadOrCreateSecret(path)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if !created || len(secret) != 2*MinSecretLen {
		t.Fatalf("create: created=%v len=%d, want true and %d (hex text of %d random bytes)", created, len(secret), 2*MinSecretLen, MinSecretLen)
	}
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if mode := fi.Mode().Perm(); mode != 0o600 {
			t.Errorf("file mode = %o, want 600", mode)
		}
		di, err := os.Stat(filepath.Dir(path))
		if err != nil {
			t.Fatal(err)
		}
		if mode := di.Mode().Perm(); mode&0o077 != 0 {
			t.Errorf("directory mode = %o, want no group/other bits", mode)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(data)); got != string(secret) {
		t.Errorf("file holds %q, want the secret as text (what JWT_SECRET takes)", got)
	}
	if _, err := hex.DecodeString(string(secret)); err != nil {
		t.Errorf("a new secret is not hex text: %v", err)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the secret (temporary file left behind?)", len(entries))
	}

	again, created, err := LoadOrCreateSecret(path)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if created || !bytes.Equal(again, secret) {
		t.Fatalf("load: created=%v, same bytes=%v; want false, true", created, bytes.Equal(again, secret))
	}
	if _, err := NewHMACSigner(again); err != nil {
		t.Fatalf("loaded secret is not usable: %v", err)
	}
}

func TestLoadOrCreateSecretExisting(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("ab", 24) // 48 bytes of text
	tests := []struct {
		name    string
		content string
		want    []byte // nil means an error is expected
	}{
		{name: "whitespace trimmed", content: "  \n" + long + "\r\n\n", want: []byte(long)},
		{name: "any text, as JWT_SECRET takes it", content: "correct horse battery staple, and then some", want: []byte("correct horse battery staple, and then some")},
		{name: "short", content: strings.Repeat("x", MinSecretLen-1)},
		{name: "empty", content: ""},
		{name: "too large", content: strings.Repeat("ab", maxSecretFileSize)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "secret")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			secret, created, err := LoadOrCreateSecret(path)
			if created {
				t.Errorf("created = true for an existing file")
			}
			if tt.want != nil {
				if err != nil || !bytes.Equal(secret, tt.want) {
					t.Fatalf("LoadOrCreateSecret = %x, %v; want %x", secret, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadOrCreateSecret = %x, want an error", secret)
			}
			if tt.content != "" && len(tt.content) < 100 && strings.Contains(err.Error(), tt.content) {
				t.Errorf("error %q echoes the file content", err)
			}
			after, rerr := os.ReadFile(path)
			if rerr != nil || string(after) != tt.content {
				t.Errorf("file was changed or removed (err %v)", rerr)
			}
		})
	}
}

func TestLoadOrCreateSecretConcurrent(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "d", "secret")
	const n = 16
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created int
		seen    [][]byte
	)
	for range n {
		wg.Go(func() {
			secret, c, err := LoadOrCreateSecret(path)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if c {
				created++
			}
			seen = append(seen, secret)
		})
	}
	wg.Wait()
	if created != 1 {
		t.Errorf("%d callers report created, want 1", created)
	}
	for _, s := range seen {
		if !bytes.Equal(s, seen[0]) {
			t.Fatalf("callers got different secrets")
		}
	}
}

func TestLoadOrCreateSecretUnreadable(t *testing.T) {
	t.Parallel()
	// A directory where the file should be is an error, not a new secret.
	path := t.TempDir()
	if _, created, err := LoadOrCreateSecret(path); err == nil || created {
		t.Fatalf("LoadOrCreateSecret(dir) = created %v, err %v; want an error", created, err)
	}
}

// LoadSecret reads what LoadOrCreateSecret wrote and never creates a file.
func TestLoadSecretNeverCreates(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "jwt-secret")
	if _, err := LoadSecret(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadSecret of a missing file: %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadSecret created %s", path)
	}
	made, _, err := LoadOrCreateSecret(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := LoadSecret(path)
	if err != nil || !bytes.Equal(got, made) {
		t.Fatalf("LoadSecret = %q, %v; want %q", got, err, made)
	}
}
