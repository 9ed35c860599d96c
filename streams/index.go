package streams

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
)

// The index of each user's sessions lists them newest first, at a cost in
// proportion to the page read, never to how many sessions there are.
//
// A list is a counter and numbered slots in IndexBucket: "<list>.n" holds
// the number of slots used, "<list>.i.<n>" the id of the session in slot
// n. Creating a session takes the next slot (compare-and-set on the
// counter); a page is one direct get of the slots it covers and one of
// their records. A user's list is "<user key>"; the list of one of their
// tags "<user key>.t.<tag key>". The record knows its slots (Slot,
// TagSlots), and a slot counts only when its record says so: a slot left
// by a lost race or a crash between the two writes is a hole listing
// skips, as is the slot of a deleted session (its entry is deleted too).

// IndexBucket is the KV bucket of the users' session lists.
const IndexBucket = "haip_session_index"

// Limits of a session's labels.
const (
	MaxTags      = 16
	MaxTagLen    = 64
	MaxNameLen   = 256
	MaxListLimit = 100
)

// ErrSessionNotFound is returned for a session with no record, or a
// deleted one.
var ErrSessionNotFound = errors.New("session not found")

// ErrBadLabel is wrapped by every refusal of a session's name or tags.
var ErrBadLabel = errors.New("invalid session label")

// ErrBadListCursor is wrapped by every refusal of a session-list cursor.
var ErrBadListCursor = errors.New("invalid session list cursor")

// ValidateTags checks a session's tags: at most MaxTags, each 1 to
// MaxTagLen bytes of UTF-8 with no control character, no duplicates.
func ValidateTags(tags []string) error {
	if len(tags) > MaxTags {
		return fmt.Errorf("%w: %d tags, at most %d", ErrBadLabel, len(tags), MaxTags)
	}
	seen := make(map[string]bool, len(tags))
	for _, t := range tags {
		if err := validateLabel("tag", t, MaxTagLen); err != nil {
			return err
		}
		if t == "" {
			return fmt.Errorf("%w: empty tag", ErrBadLabel)
		}
		if seen[t] {
			return fmt.Errorf("%w: tag %q twice", ErrBadLabel, t)
		}
		seen[t] = true
	}
	return nil
}

// ValidateName checks a session's name: at most MaxNameLen bytes of UTF-8
// with no control character.
func ValidateName(name string) error { return validateLabel("name", name, MaxNameLen) }

func validateLabel(what, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%w: %s longer than %d bytes", ErrBadLabel, what, max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not UTF-8", ErrBadLabel, what)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %s holds a control character", ErrBadLabel, what)
		}
	}
	return nil
}

func ownerList(owner string) string { return UserKey(owner) }

func tagList(owner, tag string) string {
	sum := sha256.Sum256([]byte(tag))
	return UserKey(owner) + ".t." + hex.EncodeToString(sum[:8])
}

func slotKey(list string, n uint64) string { return list + ".i." + strconv.FormatUint(n, 10) }

// isKVConflict reports a compare-and-set write that lost to another.
func isKVConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence)
}

// maxSlotAttempts bounds the compare-and-set attempts of taking a slot:
// one user opening many sessions at once (a load tool) contends on its
// list's counter, and each loser backs off a little.
const maxSlotAttempts = 64

// allocate takes the next slot of list for session and returns it.
func (s *Sessions) allocate(ctx context.Context, list, session string) (uint64, error) {
	n, err := s.addCounter(ctx, list+".n", 1)
	if err != nil {
		return 0, fmt.Errorf("cannot take a session list slot: %w", err)
	}
	if _, err := s.index.Put(ctx, slotKey(list, n), []byte(session)); err != nil {
		return 0, fmt.Errorf("cannot fill session list slot: %w", err)
	}
	return n, nil
}

// readCounter returns a counter of IndexBucket (0 when absent) and its
// revision (0 when absent).
func (s *Sessions) readCounter(ctx context.Context, key string) (n, rev uint64, err error) {
	e, err := s.index.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("cannot read %s: %w", key, err)
	}
	if n, err = strconv.ParseUint(string(e.Value()), 10, 64); err != nil {
		return 0, 0, fmt.Errorf("bad counter %s: %w", key, err)
	}
	return n, e.Revision(), nil
}

// addCounter adds delta (+1 or -1) to a counter of IndexBucket with
// compare-and-set, waiting a little between attempts that lose to
// another writer, and returns the new value. A counter at zero stays
// there.
func (s *Sessions) addCounter(ctx context.Context, key string, delta int) (uint64, error) {
	for attempt := 0; attempt < maxSlotAttempts; attempt++ {
		if attempt > 0 && !contended(ctx, attempt) {
			return 0, ctx.Err()
		}
		n, rev, err := s.readCounter(ctx, key)
		if err != nil {
			return 0, err
		}
		switch {
		case delta < 0 && n == 0:
			return 0, nil
		case delta < 0:
			n--
		default:
			n++
		}
		val := []byte(strconv.FormatUint(n, 10))
		if rev == 0 {
			_, err = s.index.Create(ctx, key, val)
		} else {
			_, err = s.index.Update(ctx, key, val, rev)
		}
		if err == nil {
			return n, nil
		}
		if !isKVConflict(err) {
			return 0, fmt.Errorf("cannot update %s: %w", key, err)
		}
	}
	return 0, ErrConflictLimit
}

// tagSlots gives rec a slot in the list of each of its tags that was not
// among oldTags, and forgets the slots of tags it no longer has (the
// caller drops their entries once the record is stored).
func (s *Sessions) tagSlots(ctx context.Context, rec *SessionRecord, oldTags []string) error {
	next := make(map[string]uint64, len(rec.Tags))
	for _, t := range rec.Tags {
		if n, ok := rec.TagSlots[t]; ok && slices.Contains(oldTags, t) {
			next[t] = n
			continue
		}
		n, err := s.allocate(ctx, tagList(rec.Owner, t), rec.ID)
		if err != nil {
			return err
		}
		next[t] = n
	}
	rec.TagSlots = next
	if len(next) == 0 {
		rec.TagSlots = nil
	}
	return nil
}

// dropSlots deletes the entries of every slot of rec (best effort: a
// slot left behind is a hole listing skips).
func (s *Sessions) dropSlots(ctx context.Context, rec SessionRecord) {
	s.dropSlot(ctx, ownerList(rec.Owner), rec.Slot)
	for t, n := range rec.TagSlots {
		s.dropSlot(ctx, tagList(rec.Owner, t), n)
	}
}

func (s *Sessions) dropSlot(ctx context.Context, list string, n uint64) {
	if n > 0 {
		_ = s.index.Delete(ctx, slotKey(list, n))
	}
}

// SessionPage is a page of a user's sessions, newest first.
type SessionPage struct {
	Sessions []SessionRecord
	// Next is the cursor of the following (older) page; empty when this
	// page reached the oldest session.
	Next string
}

// maxHolesRead bounds the empty slots (deleted sessions) one page reads
// past, as a multiple of its limit; the page then ends short, with a
// cursor to go on from.
const maxHolesRead = 4

// List returns a page of owner's sessions (of those tagged tag, when tag
// is not empty), newest first, starting at cursor ("" for the newest). It
// reads the page's slots and records with one direct get each per batch.
func (s *Sessions) List(ctx context.Context, owner, tag, cursor string, limit int) (SessionPage, error) {
	limit = max(1, min(limit, MaxListLimit))
	list := ownerList(owner)
	if tag != "" {
		if err := ValidateTags([]string{tag}); err != nil {
			return SessionPage{}, err
		}
		list = tagList(owner, tag)
	}
	from, err := s.listStart(ctx, list, cursor)
	if err != nil {
		return SessionPage{}, err
	}
	var page SessionPage
	budget := limit * maxHolesRead
	for from > 0 && len(page.Sessions) < limit && budget > 0 {
		n := min(uint64(limit-len(page.Sessions)), from)
		keys := make([]string, 0, n)
		slots := make([]uint64, 0, n)
		for i := range n {
			keys = append(keys, slotKey(list, from-i))
			slots = append(slots, from-i)
		}
		from -= n
		budget -= int(n)
		ids, err := s.lastValues(ctx, IndexBucket, keys)
		if err != nil {
			return SessionPage{}, err
		}
		var want []string
		for _, k := range keys {
			if id, ok := ids[k]; ok && ValidateSessionID(string(id)) == nil {
				want = append(want, string(id))
			}
		}
		recs, err := s.lastValues(ctx, SessionBucket, want)
		if err != nil {
			return SessionPage{}, err
		}
		for i, k := range keys {
			id, ok := ids[k]
			if !ok {
				continue
			}
			raw, ok := recs[string(id)]
			if !ok {
				continue
			}
			var rec SessionRecord
			if json.Unmarshal(raw, &rec) != nil || rec.Owner != owner || !rec.Deleted.IsZero() {
				continue
			}
			if (tag == "" && rec.Slot != slots[i]) || (tag != "" && rec.TagSlots[tag] != slots[i]) {
				continue
			}
			page.Sessions = append(page.Sessions, rec)
		}
	}
	if from > 0 {
		page.Next = listCursor(from)
	}
	return page, nil
}

// listStart is the slot a page starts at: the cursor's, or the newest.
func (s *Sessions) listStart(ctx context.Context, list, cursor string) (uint64, error) {
	if cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(cursor)
		rest, ok := strings.CutPrefix(string(raw), "l1.")
		if err != nil || !ok {
			return 0, fmt.Errorf("%w: not a cursor this server made", ErrBadListCursor)
		}
		n, err := strconv.ParseUint(rest, 10, 64)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("%w: not a cursor this server made", ErrBadListCursor)
		}
		return n, nil
	}
	n, _, err := s.readCounter(ctx, list+".n")
	if err != nil {
		return 0, fmt.Errorf("cannot read session list: %w", err)
	}
	return n, nil
}

func listCursor(n uint64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("l1." + strconv.FormatUint(n, 10)))
}

// kvOperation is the header KV marks deletes and purges with.
const kvOperation = "KV-Operation"

// lastValues reads the current values of keys of a KV bucket with one
// multi-subject direct get; deleted and missing keys are absent.
func (s *Sessions) lastValues(ctx context.Context, bucket string, keys []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	prefix := "$KV." + bucket + "."
	subjects := make([]string, len(keys))
	for i, k := range keys {
		subjects[i] = prefix + k
	}
	msgs, _, err := directBatch(ctx, s.nc, "KV_"+bucket, directRequest{MultiLastFor: subjects, Batch: len(subjects)})
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", bucket, err)
	}
	for _, m := range msgs {
		if op := m.Header.Get(kvOperation); op != "" {
			continue
		}
		out[strings.TrimPrefix(m.Subject, prefix)] = m.Data
	}
	return out, nil
}

// LastActivity returns, for each of sessions, when its log last stored a
// message (either direction), read with one multi-subject direct get;
// sessions with nothing stored are absent.
func (l *Log) LastActivity(ctx context.Context, sessions []string) (map[string]time.Time, error) {
	var subjects []string
	for _, id := range sessions {
		for _, d := range []Direction{In, Out} {
			subj, err := LogSubject(id, d)
			if err != nil {
				return nil, err
			}
			subjects = append(subjects, subj)
		}
	}
	out := make(map[string]time.Time, len(sessions))
	if len(subjects) == 0 {
		return out, nil
	}
	msgs, _, err := directBatch(ctx, l.nc, SessionStream, directRequest{MultiLastFor: subjects, Batch: len(subjects)})
	if err != nil {
		return nil, fmt.Errorf("cannot read last activity: %w", err)
	}
	for _, m := range msgs {
		ts, err := time.Parse(time.RFC3339Nano, m.Header.Get(hdrTimeStamp))
		if err != nil {
			continue
		}
		id := strings.TrimPrefix(m.Subject, sessionPrefix)
		if i := strings.LastIndexByte(id, '.'); i > 0 {
			id = id[:i]
		}
		if ts.After(out[id]) {
			out[id] = ts
		}
	}
	return out, nil
}

// ownedKey is the key counting an owner's sessions not deleted.
func ownedKey(owner string) string { return ownerList(owner) + ".live" }

// ownedCount returns how many sessions owner has (not deleted).
func (s *Sessions) ownedCount(ctx context.Context, owner string) (uint64, error) {
	n, _, err := s.readCounter(ctx, ownedKey(owner))
	if err != nil {
		return 0, fmt.Errorf("cannot count sessions: %w", err)
	}
	return n, nil
}

// countOwned adds delta to owner's count of sessions (best effort: a
// count that could not be changed is off by one, never below zero).
func (s *Sessions) countOwned(ctx context.Context, owner string, delta int) {
	_, _ = s.addCounter(ctx, ownedKey(owner), delta)
}

// contended waits a short random time before another compare-and-set
// attempt on a counter others are changing (a few milliseconds: the
// winner's write takes about one round trip). false when ctx ends.
func contended(ctx context.Context, attempt int) bool {
	t := time.NewTimer(time.Duration(1+rand.IntN(min(attempt, 10)*2)) * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
