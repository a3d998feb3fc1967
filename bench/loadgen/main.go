// Command loadgen drives one WebSocket (or plain TCP) echo server for bench/run.py.
//
// Modes:
//
//	check  one connection echoes a 32-byte text message and a 1 KiB binary one: the readiness probe
//	echo   -conns connections, each sending a -size message and waiting for its echo, again and
//	       again, for -duration seconds after -warmup; every echo is compared byte for byte
//	idle   -conns connections opened -dialc at a time, held -hold seconds while reading (gorilla
//	       answers the server's pings from the reader), then each one must echo one message
//	bcast  -conns connections; connection 0 sends a 32-byte text message beginning "BCAST:", which
//	       the server sends to every connection; one warm-up round, then -rounds timed ones
//
// -raw host:port speaks plain TCP instead of WebSocket (the raw gevent echo): a message is
// -size bytes written, and the same bytes read back.
//
// Output: "MARK <name> <unix seconds>" lines as phases start and end, then one line
// "RESULT {json}". Every dial, read and write has a -timeout, and the whole run a -deadline.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	wsURL    = flag.String("url", "", "WebSocket URL, e.g. ws://127.0.0.1:8000/ws")
	rawAddr  = flag.String("raw", "", "host:port: plain TCP instead of WebSocket")
	mode     = flag.String("mode", "echo", "check | echo | idle | bcast")
	conns    = flag.Int("conns", 1, "connections")
	size     = flag.Int("size", 32, "echo: message size in bytes")
	binary   = flag.Bool("binary", false, "echo: binary messages (default: text)")
	warmup   = flag.Float64("warmup", 1, "echo: seconds before the measured window")
	duration = flag.Float64("duration", 5, "echo: seconds measured")
	settle   = flag.Float64("settle", 1, "idle: seconds between all connected and the hold")
	hold     = flag.Float64("hold", 5, "idle: seconds the connections are held")
	rounds   = flag.Int("rounds", 10, "bcast: timed rounds, after one warm-up round")
	dialc    = flag.Int("dialc", 64, "connections dialled at a time")
	timeout  = flag.Duration("timeout", 10*time.Second, "bound on every dial, read and write")
	deadline = flag.Duration("deadline", 10*time.Minute, "bound on the whole run")
)

const smallSize = 32 // idle and bcast messages

type result struct {
	Mode          string    `json:"mode"`
	Raw           bool      `json:"raw"`
	Conns         int       `json:"conns"`
	Connected     int       `json:"connected"`
	Size          int       `json:"size"`
	Binary        bool      `json:"binary"`
	DialS         float64   `json:"dial_s"`
	Msgs          int64     `json:"msgs"`       // echo: round trips inside the window
	MsgsTotal     int64     `json:"msgs_total"` // echo: every round trip, warm-up included
	ElapsedS      float64   `json:"elapsed_s"`
	MsgsPerS      float64   `json:"msgs_per_s"`
	MBPerS        float64   `json:"mb_per_s"` // payload bytes of one direction
	P50us         float64   `json:"p50_us"`
	P99us         float64   `json:"p99_us"`
	MaxUs         float64   `json:"max_us"`
	Alive         int       `json:"alive"`   // idle: connections that echoed after the hold
	Dropped       int       `json:"dropped"` // idle: connections the server closed before the check
	BcastMs       []float64 `json:"bcast_ms,omitempty"`
	BcastMedianMs float64   `json:"bcast_median_ms"`
	BcastMaxMs    float64   `json:"bcast_max_ms"`
	BcastFirstMs  float64   `json:"bcast_first_median_ms"` // until the first connection has it
	ClientCPUS    float64   `json:"client_cpu_s"`
	ClientCPUPct  float64   `json:"client_cpu_pct"`
	Errors        int64     `json:"errors"`
	FirstError    string    `json:"first_error,omitempty"`
}

var (
	errCount   int64
	firstError atomic.Value
	closing    int32 // set once we close the connections ourselves: read errors are expected then
	outputMu   sync.Mutex
	printed    bool
)

func noteErr(err error) {
	if atomic.AddInt64(&errCount, 1) == 1 {
		firstError.Store(err.Error())
	}
}

func mark(name string, extra ...interface{}) {
	outputMu.Lock()
	defer outputMu.Unlock()
	fmt.Printf("MARK %s %.6f%s\n", name, float64(time.Now().UnixNano())/1e9, fmt.Sprint(extra...))
}

func emit(res *result) {
	outputMu.Lock()
	defer outputMu.Unlock()
	if printed {
		return
	}
	printed = true
	res.Errors = atomic.LoadInt64(&errCount)
	if v := firstError.Load(); v != nil {
		res.FirstError = v.(string)
	}
	out, _ := json.Marshal(res)
	fmt.Printf("RESULT %s\n", out)
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func main() {
	flag.Parse()
	if (*wsURL == "") == (*rawAddr == "") {
		fmt.Fprintln(os.Stderr, "loadgen: give exactly one of -url and -raw")
		os.Exit(2)
	}
	runs := map[string]func(*result){"check": runCheck, "echo": runEcho, "idle": runIdle, "bcast": runBcast}
	run, ok := runs[*mode]
	if !ok {
		fmt.Fprintf(os.Stderr, "loadgen: unknown mode %q\n", *mode)
		os.Exit(2)
	}
	res := &result{Mode: *mode, Raw: *rawAddr != "", Conns: *conns, Size: *size, Binary: *binary}
	time.AfterFunc(*deadline, func() {
		noteErr(fmt.Errorf("the run passed its deadline of %v", *deadline))
		emit(&result{Mode: res.Mode, Raw: res.Raw, Conns: res.Conns, Size: res.Size, Binary: res.Binary})
		os.Exit(3)
	})
	run(res)
	emit(res)
}
