package main

// Connections: dialling, one message written or read with a timeout, the echo check.

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// conn is one WebSocket or plain TCP connection.
type conn struct {
	ws  *websocket.Conn
	tcp net.Conn
}

var writePool = &sync.Pool{} // idle and bcast: thousands of connections share write buffers

func dial(messageSize int) (*conn, error) {
	if *rawAddr != "" {
		c, err := net.DialTimeout("tcp", *rawAddr, *timeout)
		if err != nil {
			return nil, err
		}
		return &conn{tcp: c}, nil
	}
	d := websocket.Dialer{HandshakeTimeout: *timeout, ReadBufferSize: 4096, WriteBufferSize: 4096}
	if messageSize > 4096 {
		d.ReadBufferSize = 64 << 10
		d.WriteBufferSize = messageSize + 64 // gorilla writes a message as one frame when it fits
	} else {
		d.WriteBufferPool = writePool
	}
	c, resp, err := d.Dial(*wsURL, nil)
	if err != nil {
		if resp != nil {
			err = fmt.Errorf("%v (HTTP %s)", err, resp.Status)
		}
		return nil, err
	}
	c.SetReadLimit(64 << 20)
	return &conn{ws: c}, nil
}

// dialAll opens n connections, -dialc at a time; failed dials count as errors.
func dialAll(n, messageSize int, res *result) []*conn {
	out := make([]*conn, n)
	sem := make(chan struct{}, *dialc)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dial(messageSize)
			if err != nil {
				noteErr(fmt.Errorf("dial: %v", err))
				return
			}
			out[i] = c
		}(i)
	}
	wg.Wait()
	res.DialS = time.Since(start).Seconds()
	live := out[:0]
	for _, c := range out {
		if c != nil {
			live = append(live, c)
		}
	}
	res.Connected = len(live)
	return live
}

func (c *conn) write(p []byte, binary bool) error {
	until := time.Now().Add(*timeout)
	if c.tcp != nil {
		_ = c.tcp.SetWriteDeadline(until)
		_, err := c.tcp.Write(p)
		return err
	}
	_ = c.ws.SetWriteDeadline(until)
	kind := websocket.TextMessage
	if binary {
		kind = websocket.BinaryMessage
	}
	return c.ws.WriteMessage(kind, p)
}

// read reads one message of exactly len(buf) bytes and of the given kind (raw: len(buf) bytes).
func (c *conn) read(buf []byte, binary bool, until time.Time) error {
	if c.tcp != nil {
		_ = c.tcp.SetReadDeadline(until)
		_, err := io.ReadFull(c.tcp, buf)
		return err
	}
	_ = c.ws.SetReadDeadline(until)
	kind, r, err := c.ws.NextReader()
	if err != nil {
		return err
	}
	n, err := io.ReadFull(r, buf)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("message of %d bytes, expected %d", n, len(buf))
	} else if err != nil {
		return err
	}
	var one [1]byte
	if m, _ := r.Read(one[:]); m > 0 {
		return fmt.Errorf("message longer than the %d bytes sent", len(buf))
	}
	want := websocket.TextMessage
	if binary {
		want = websocket.BinaryMessage
	}
	if kind != want {
		return fmt.Errorf("message type %d, sent %d", kind, want)
	}
	return nil
}

// roundTrip sends p and reads its echo into buf (len(buf) == len(p)), then compares them.
func (c *conn) roundTrip(p, buf []byte, binary bool) error {
	var err error
	if c.tcp != nil && len(p) > 64<<10 {
		// The raw echo streams back while we write: write and read at the same time.
		written := make(chan error, 1)
		go func() { written <- c.write(p, binary) }()
		err = c.read(buf, binary, time.Now().Add(*timeout))
		if werr := <-written; err == nil {
			err = werr
		}
	} else if err = c.write(p, binary); err == nil {
		err = c.read(buf, binary, time.Now().Add(*timeout))
	}
	if err == nil && !bytes.Equal(buf, p) {
		err = fmt.Errorf("the echo differs from the message sent (%q...)", buf[:imin(len(buf), 40)])
	}
	return err
}

func (c *conn) close() {
	if c.tcp != nil {
		c.tcp.Close()
		return
	}
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	c.ws.Close()
}

func closeAll(cs []*conn) {
	atomic.StoreInt32(&closing, 1)
	for _, c := range cs {
		c.close()
	}
}

func imin(a, b int) int {
	if a < b {
		return a
	}
	return b
}

// payload is a message of n bytes: ASCII (valid as text), random bytes when binary.
func payload(n int, binary bool) []byte {
	p := make([]byte, n)
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	for i := range p {
		if binary {
			p[i] = byte(rand.Intn(256))
		} else {
			p[i] = letters[rand.Intn(len(letters))]
		}
	}
	return p
}

// stamp writes seq as zero-padded decimal digits over the first 16 bytes: each message differs.
func stamp(p []byte, seq int) {
	for i := imin(16, len(p)) - 1; i >= 0; i-- {
		p[i] = byte('0' + seq%10)
		seq /= 10
	}
}

func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(q*float64(len(sorted)-1))]
}
