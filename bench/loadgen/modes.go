package main

// The modes: check, echo, idle and bcast.

import (
	"bytes"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

func runCheck(res *result) {
	live := dialAll(1, 1024, res)
	if len(live) == 0 {
		return
	}
	defer closeAll(live)
	for _, m := range []struct {
		size   int
		binary bool
	}{{smallSize, false}, {1024, true}} {
		if *rawAddr != "" && m.binary {
			continue
		}
		p := payload(m.size, m.binary)
		if err := live[0].roundTrip(p, make([]byte, m.size), m.binary); err != nil {
			noteErr(err)
			return
		}
		res.Msgs++
	}
}

func runEcho(res *result) {
	live := dialAll(*conns, *size, res)
	if len(live) == 0 {
		return
	}
	defer closeAll(live)
	windowStart := time.Now().Add(seconds(*warmup))
	windowEnd := windowStart.Add(seconds(*duration))
	var cpuStart, cpuEnd float64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(time.Until(windowStart))
		cpuStart = cpuSeconds()
		mark("window_start")
		time.Sleep(time.Until(windowEnd))
		cpuEnd = cpuSeconds()
		mark("window_end")
	}()
	latencies := make([][]float64, len(live))
	var total, inWindow int64
	base := payload(*size, *binary)
	for i, c := range live {
		wg.Add(1)
		go func(i int, c *conn) {
			defer wg.Done()
			p := append([]byte(nil), base...)
			buf := make([]byte, len(p))
			lat := make([]float64, 0, 1024)
			defer func() { latencies[i] = lat }()
			for seq := 0; ; seq++ {
				t0 := time.Now()
				if !t0.Before(windowEnd) {
					return
				}
				stamp(p, seq)
				if err := c.roundTrip(p, buf, *binary); err != nil {
					noteErr(err)
					return
				}
				t1 := time.Now()
				atomic.AddInt64(&total, 1)
				if !t0.Before(windowStart) && !t1.After(windowEnd) {
					lat = append(lat, float64(t1.Sub(t0).Nanoseconds())/1e3)
					atomic.AddInt64(&inWindow, 1)
				}
			}
		}(i, c)
	}
	wg.Wait()
	var all []float64
	for _, l := range latencies {
		all = append(all, l...)
	}
	sort.Float64s(all)
	res.Msgs, res.MsgsTotal, res.ElapsedS = inWindow, total, *duration
	res.MsgsPerS = float64(inWindow) / *duration
	res.MBPerS = res.MsgsPerS * float64(*size) / 1e6
	res.P50us, res.P99us = percentile(all, 0.50), percentile(all, 0.99)
	if len(all) > 0 {
		res.MaxUs = all[len(all)-1]
	}
	res.ClientCPUS = cpuEnd - cpuStart
	res.ClientCPUPct = 100 * res.ClientCPUS / *duration
}

type received struct {
	at   time.Time
	data []byte
}

// startReader reads smallSize-byte messages until an error (or until), delivering each one;
// the channel is closed when the connection ends. Reading is what answers the server's pings.
func startReader(c *conn, until time.Time) chan received {
	ch := make(chan received, 4)
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, smallSize)
			if err := c.read(buf, false, until); err != nil {
				if atomic.LoadInt32(&closing) == 0 {
					noteErr(fmt.Errorf("read: %v", err))
				}
				return
			}
			select {
			case ch <- received{time.Now(), buf}:
			default:
				noteErr(fmt.Errorf("unexpected message %q", buf))
			}
		}
	}()
	return ch
}

func runIdle(res *result) {
	live := dialAll(*conns, smallSize, res)
	defer closeAll(live)
	mark("connected", " ", len(live))
	until := time.Now().Add(seconds(*settle+*hold) + 3**timeout)
	inboxes := make([]chan received, len(live))
	for i, c := range live {
		inboxes[i] = startReader(c, until)
	}
	time.Sleep(seconds(*settle))
	cpuStart := cpuSeconds()
	mark("hold_start")
	time.Sleep(seconds(*hold))
	mark("hold_end")
	res.ClientCPUS = cpuSeconds() - cpuStart
	res.ClientCPUPct = 100 * res.ClientCPUS / *hold
	var alive, dropped int64
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	for i, c := range live {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int, c *conn) {
			defer wg.Done()
			defer func() { <-sem }()
			p := payload(smallSize, false)
			stamp(p, i)
			timer := time.NewTimer(*timeout)
			defer timer.Stop()
			if err := c.write(p, false); err != nil {
				noteErr(fmt.Errorf("write after the hold: %v", err))
			}
			select {
			case got, ok := <-inboxes[i]:
				if !ok {
					atomic.AddInt64(&dropped, 1)
				} else if !bytes.Equal(got.data, p) {
					noteErr(fmt.Errorf("the echo after the hold differs (%q)", got.data))
				} else {
					atomic.AddInt64(&alive, 1)
				}
			case <-timer.C:
				noteErr(fmt.Errorf("no echo within %v after the hold", *timeout))
			}
		}(i, c)
	}
	wg.Wait()
	res.Alive, res.Dropped = int(alive), int(dropped)
	mark("checked")
}

func runBcast(res *result) {
	live := dialAll(*conns, smallSize, res)
	defer closeAll(live)
	if len(live) < *conns {
		return
	}
	until := time.Now().Add(time.Duration(*rounds+1)*(*timeout+time.Second) + *timeout)
	inboxes := make([]chan received, len(live))
	for i, c := range live {
		inboxes[i] = startReader(c, until)
	}
	time.Sleep(300 * time.Millisecond)
	cpuStart := cpuSeconds()
	var lasts, firsts []float64
	for r := 0; r <= *rounds; r++ {
		msg := []byte(fmt.Sprintf("BCAST:%06d:", r))
		for len(msg) < smallSize {
			msg = append(msg, 'x')
		}
		sent := time.Now()
		if err := live[0].write(msg, false); err != nil {
			noteErr(err)
			return
		}
		timer := time.NewTimer(*timeout)
		var first, last time.Time
		for i := range live {
			select {
			case got, ok := <-inboxes[i]:
				if !ok {
					noteErr(fmt.Errorf("connection %d closed during the broadcast", i))
					return
				}
				if !bytes.Equal(got.data, msg) {
					noteErr(fmt.Errorf("connection %d got %q, expected %q", i, got.data, msg))
					return
				}
				if got.at.After(last) {
					last = got.at
				}
				if first.IsZero() || got.at.Before(first) {
					first = got.at
				}
			case <-timer.C:
				noteErr(fmt.Errorf("round %d: connection %d had nothing within %v", r, i, *timeout))
				return
			}
		}
		timer.Stop()
		if r > 0 {
			lasts = append(lasts, float64(last.Sub(sent).Nanoseconds())/1e6)
			firsts = append(firsts, float64(first.Sub(sent).Nanoseconds())/1e6)
		}
		time.Sleep(100 * time.Millisecond)
	}
	res.ClientCPUS = cpuSeconds() - cpuStart
	res.BcastMs = append([]float64(nil), lasts...)
	sort.Float64s(lasts)
	sort.Float64s(firsts)
	res.BcastMedianMs, res.BcastMaxMs = percentile(lasts, 0.5), lasts[len(lasts)-1]
	res.BcastFirstMs = percentile(firsts, 0.5)
	res.Msgs = int64(len(live) * *rounds)
}
