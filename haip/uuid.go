package haip

import (
	"crypto/rand"
	"crypto/sha1"
	"strconv"
)

// NameSpace is the RFC 4122 namespace uuid under which NameUUID derives its
// version-5 uuids. It is itself the version-5 uuid of the URL
// "https://github.com/haipfabric/haipfabric/haip" in the RFC's URL
// namespace. It never changes: changing it would change every derived id.
const NameSpace = "ea962082-bc85-5fd7-a2d7-1c6890066486"

// nameSpaceBytes is NameSpace as its 16 raw bytes (a test checks they agree).
const nameSpaceBytes = "\xea\x96\x20\x82\xbc\x85\x5f\xd7\xa2\xd7\x1c\x68\x90\x06\x64\x86"

// ValidUUID reports whether s has the RFC 4122 textual shape
// 8-4-4-4-12 hex digits (either case). Any version and variant is accepted,
// including UUIDv7 and the nil uuid: this package is lenient on input
// (gap G16) and emits only version 4 (NewUUID) and 5 (NameUUID).
func ValidUUID(s string) bool {
	return validUUID(s)
}

// validUUID is ValidUUID for strings and byte slices alike, so that payload
// checks need not convert (and allocate) to test a uuid.
func validUUID[T string | []byte](s T) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !isHex(c) {
				return false
			}
		}
	}
	return true
}

// isHex reports whether c is an ASCII hex digit.
func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// NewUUID returns a random version-4 uuid in lower case, read from
// crypto/rand. It is safe for concurrent use.
func NewUUID() string {
	var u [16]byte
	// crypto/rand.Read never returns an error (it crashes the program if the
	// system's randomness source fails), so there is nothing to handle.
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return formatUUID(&u)
}

// NameUUID returns the deterministic RFC 4122 version-5 (SHA-1) uuid of
// parts under NameSpace, in lower case. The parts are joined unambiguously:
// each is written as its byte length in decimal, a colon, then its bytes
// ("a","bc" hashes "1:a2:bc", "ab","c" hashes "2:ab1:c"), so different part
// lists never collide by concatenation. Other implementations can reproduce
// the ids from this description.
func NameUUID(parts ...string) string {
	h := sha1.New()
	h.Write([]byte(nameSpaceBytes))
	var lenBuf [20]byte
	for _, p := range parts {
		h.Write(strconv.AppendInt(lenBuf[:0], int64(len(p)), 10))
		h.Write([]byte{':'})
		h.Write([]byte(p))
	}
	var sum [sha1.Size]byte
	h.Sum(sum[:0])
	var u [16]byte
	copy(u[:], sum[:16])
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return formatUUID(&u)
}

// formatUUID writes u in the lower-case 8-4-4-4-12 form.
func formatUUID(u *[16]byte) string {
	const digits = "0123456789abcdef"
	var b [36]byte
	j := 0
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b[j] = '-'
			j++
		}
		b[j] = digits[c>>4]
		b[j+1] = digits[c&0x0f]
		j += 2
	}
	return string(b[:])
}
