package agentcfg_test

import (
	"strings"
	"testing"

	"github.com/caarlos0/env/v11"

	"github.com/haipfabric/haipfabric/internal/agentcfg"
)

// The defaults run the demo agent, as before the LLM agent existed; an LLM
// configuration is checked at start, every bad setting named at once.
func TestAgentConfig(t *testing.T) {
	var c agentcfg.Config
	if err := env.ParseWithOptions(&c, env.Options{Environment: map[string]string{}}); err != nil {
		t.Fatal(err)
	}
	if c.Kind != agentcfg.KindDemo || c.AgentName() != "demo" || c.Validate() != nil {
		t.Fatalf("defaults: kind %q name %q: %v", c.Kind, c.AgentName(), c.Validate())
	}
	bad := map[string]string{"AGENT": "llm", "LLM_PROVIDER": "gemini", "LLM_TEMPERATURE": "hot", "TOOL_ACCESS": "echo"}
	if err := env.ParseWithOptions(&c, env.Options{Environment: bad}); err != nil {
		t.Fatal(err)
	}
	err := c.Validate()
	for _, want := range []string{"LLM_PROVIDER", "LLM_MODEL is empty", "LLM_TEMPERATURE", "TOOL_ACCESS"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want it to name %s", err, want)
		}
	}
	good := map[string]string{"AGENT": "llm", "LLM_MODEL": "llama3.2", "LLM_BASE_URL": "http://localhost:11434/v1", "LLM_TEMPERATURE": "0.3"}
	c = agentcfg.Config{}
	if err := env.ParseWithOptions(&c, env.Options{Environment: good}); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || c.AgentName() != "llm" {
		t.Fatalf("a local model: %v (name %q)", err, c.AgentName())
	}
}
