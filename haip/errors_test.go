package haip_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/haipfabric/haipfabric/haip"
)

func TestError(t *testing.T) {
	t.Parallel()
	e := haip.Errorf(haip.CodeSeqViolation, "seq %d after %d", 5, 7).WithRelated(tID).WithDetail("seq", 5)
	if got, want := e.Error(), "haip: SEQ_VIOLATION: seq 5 after 7"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if e.RelatedID != tID || e.Detail["seq"] != 5 {
		t.Errorf("error = %+v", e)
	}

	wrapped := fmt.Errorf("cannot deliver: %w", e)
	if haip.CodeOf(wrapped) != haip.CodeSeqViolation {
		t.Errorf("CodeOf(wrapped) = %q", haip.CodeOf(wrapped))
	}
	if haip.CodeOf(errors.New("plain")) != "" || haip.CodeOf(nil) != "" {
		t.Error("CodeOf of a non-HAIP error is not empty")
	}
	if !errors.Is(wrapped, &haip.Error{Code: haip.CodeSeqViolation}) {
		t.Error("errors.Is does not match by code")
	}
	if errors.Is(wrapped, &haip.Error{Code: haip.CodeReplayTooOld}) {
		t.Error("errors.Is matched a different code")
	}

	p := e.Payload()
	if p.Code != haip.CodeSeqViolation || p.Message != "seq 5 after 7" || p.RelatedID != tID || p.Detail["seq"] != 5 {
		t.Errorf("Payload() = %+v", p)
	}
	e.WithDetail("later", true)
	if _, ok := p.Detail["later"]; ok {
		t.Error("Payload shares its Detail map with the error")
	}
	if p := haip.Errorf(haip.CodeInternalError, "x").Payload(); p.Detail != nil {
		t.Errorf("Payload without detail has Detail %v", p.Detail)
	}

	var nilErr *haip.Error
	if nilErr.Error() == "" {
		t.Error("nil *Error has empty text")
	}
}

func TestCodes(t *testing.T) {
	t.Parallel()
	codes := map[haip.Code]string{
		haip.CodeProtocolViolation:    "PROTOCOL_VIOLATION",
		haip.CodeSeqViolation:         "SEQ_VIOLATION",
		haip.CodeFlowControlViolation: "FLOW_CONTROL_VIOLATION",
		haip.CodeVersionIncompatible:  "VERSION_INCOMPATIBLE",
		haip.CodeRunLimitExceeded:     "RUN_LIMIT_EXCEEDED",
		haip.CodeReplayTooOld:         "REPLAY_TOO_OLD",
		haip.CodeUnsupportedType:      "UNSUPPORTED_TYPE",
		haip.CodeResumeFailed:         "RESUME_FAILED",
		haip.CodeAuthenticationFailed: "AUTHENTICATION_FAILED",
		haip.CodeToolExecutionError:   "TOOL_EXECUTION_ERROR",
		haip.CodeToolNotFound:         "TOOL_NOT_FOUND",
		haip.CodeRunNotFound:          "RUN_NOT_FOUND",
		haip.CodeMissingRunID:         "MISSING_RUN_ID",
		haip.CodeSessionForbidden:     "SESSION_FORBIDDEN",
		haip.CodeMessageTooLarge:      "MESSAGE_TOO_LARGE",
		haip.CodeInternalError:        "INTERNAL_ERROR",
		haip.CodeSlowConsumer:         "SLOW_CONSUMER",
		haip.CodeServerShutdown:       "SERVER_SHUTDOWN",
		haip.CodeTooManyConnections:   "TOO_MANY_CONNECTIONS",
		haip.CodeSessionNotFound:      "SESSION_NOT_FOUND",
		haip.CodeRateLimited:          "RATE_LIMITED",
	}
	if len(codes) != 21 {
		t.Fatalf("%d distinct codes, want 21", len(codes))
	}
	for c, want := range codes {
		if string(c) != want {
			t.Errorf("code %q, want %q", c, want)
		}
	}
}
