// The single page of `ctdet serve`: no external resources (no CDN, no fonts), so it works offline and in
// headless Chromium. The browser draws the image the server decoded (base64 PNG, so DICOM works too) on a
// canvas with the boxes on top; the slider re-filters boxes and table rows without asking the server again.
#include <cstdio>
#include <string>

#include "serve/server.h"

namespace ctdet {

namespace {

std::string html_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      default: o += c;
    }
  }
  return o;
}

const char* kPage = R"HTML(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ctdet: lesion detection</title>
<style>
body{font-family:DejaVu Sans,Arial,sans-serif;margin:0;background:#f4f5f7;color:#222}
header{background:#1f2d3d;color:#fff;padding:10px 18px}
header h1{font-size:18px;margin:0}
header .model{font-size:12px;color:#c8d3df;margin-top:3px}
main{display:flex;gap:18px;padding:16px 18px;flex-wrap:wrap}
.panel{background:#fff;border:1px solid #d8dce1;border-radius:6px;padding:12px}
#viewer{flex:0 0 auto}
#side{flex:1 1 360px;min-width:340px}
canvas{background:#000;display:block;max-width:760px;image-rendering:pixelated}
label{font-size:13px}
.controls{display:flex;flex-direction:column;gap:10px;margin-bottom:12px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #e3e6ea;padding:4px 6px;text-align:left}
th{background:#eef1f4}
.sw{display:inline-block;width:10px;height:10px;margin-right:5px;border:1px solid #555}
#status{font-size:13px;min-height:18px}
#status.err{color:#b00020;font-weight:bold}
.muted{color:#777;font-size:12px}
</style></head><body>
<header><h1>ctdet &mdash; COVID-19 lesion detection on chest CT</h1>
<div class="model">model: <span id="model">@MODEL@</span> &middot; ctdet @VERSION@</div></header>
<main>
<div class="panel" id="viewer"><canvas id="cv" width="512" height="512"></canvas>
<div class="muted" id="imginfo">no slice yet</div></div>
<div class="panel" id="side">
<div class="controls">
<label>Upload a slice (PNG, JPEG or DICOM): <input type="file" id="file" accept=".png,.jpg,.jpeg,.dcm,image/png,image/jpeg,application/dicom"></label>
<label id="chooser" style="display:none">or choose one: <select id="slices"><option value="">&mdash;</option></select></label>
<label>score threshold: <input type="range" id="thr" min="0.05" max="1" step="0.01" value="@THRESHOLD@">
<b id="thrv">@THRESHOLD@</b></label>
<div id="status"></div>
</div>
<table><thead><tr><th>#</th><th>finding</th><th>score</th><th>box (x1, y1, x2, y2)</th><th>size</th></tr></thead>
<tbody id="rows"><tr><td colspan="5" class="muted">upload or choose a slice</td></tr></tbody></table>
<p class="muted" id="summary"></p>
</div></main>
<script>
"use strict";
const COLORS={"GGO":"#ffd700","CD":"#ff2020","GGO+CD":"#ff00ff"};
const PALETTE=["#00c8ff","#ff8c00","#7cfc00","#ba55d3"];
let last=null, img=null;
const $=id=>document.getElementById(id);
function color(d){return COLORS[d.class.toUpperCase()]||PALETTE[d.class_id%PALETTE.length];}
function setStatus(t,err){const s=$("status");s.textContent=t;s.className=err?"err":"";}
function draw(){
  const thr=parseFloat($("thr").value); $("thrv").textContent=thr.toFixed(2);
  if(!last||!img) return;
  const cv=$("cv"), W=last.image.width, H=last.image.height;
  const scale=Math.max(1,Math.min(4,Math.floor(640/Math.max(W,H))));
  cv.width=W*scale; cv.height=H*scale;
  const cx=cv.getContext("2d"); cx.imageSmoothingEnabled=false; cx.drawImage(img,0,0,cv.width,cv.height);
  const shown=last.detections.filter(d=>d.score>=thr);
  shown.slice().reverse().forEach(d=>{
    const [x1,y1,x2,y2]=d.box.map(v=>v*scale);
    cx.strokeStyle=color(d); cx.lineWidth=2; cx.strokeRect(x1+1,y1+1,Math.max(0,x2-x1-2),Math.max(0,y2-y1-2));
    cx.font="12px DejaVu Sans, Arial"; const t=d.class+" "+d.score.toFixed(2); const tw=cx.measureText(t).width+6;
    const ty=y1>=16?y1-16:y1; cx.fillStyle=color(d); cx.fillRect(x1,ty,tw,15); cx.fillStyle="#000"; cx.fillText(t,x1+3,ty+12);
  });
  const rows=$("rows"); rows.innerHTML="";
  if(!shown.length){rows.innerHTML='<tr><td colspan="5" class="muted">no findings at score &ge; '+thr.toFixed(2)+'</td></tr>';}
  shown.forEach((d,i)=>{
    const tr=document.createElement("tr");
    const b=d.box.map(v=>v.toFixed(1)).join(", ");
    tr.innerHTML='<td>'+(i+1)+'</td><td><span class="sw" style="background:'+color(d)+'"></span>'+d.class+
      '</td><td>'+d.score.toFixed(3)+'</td><td>'+b+'</td><td>'+Math.round(d.box[2]-d.box[0])+'&times;'+Math.round(d.box[3]-d.box[1])+'</td>';
    rows.appendChild(tr);
  });
  const counts={}; shown.forEach(d=>counts[d.class]=(counts[d.class]||0)+1);
  $("summary").textContent=shown.length+" of "+last.detections.length+" detections shown"+
    (shown.length?" ("+Object.entries(counts).map(([k,v])=>v+" "+k).join(", ")+")":"")+"; detection took "+last.ms.toFixed(0)+" ms";
}
async function detect(url,body){
  setStatus("detecting ...",false);
  try{
    const r=await fetch(url,{method:"POST",body:body});
    const j=await r.json();
    if(!r.ok){setStatus("error "+r.status+": "+(j.error||r.statusText),true);return;}
    last=j; img=new Image();
    img.onload=()=>{draw();setStatus("",false);};
    img.src="data:image/png;base64,"+j.png;
    $("imginfo").textContent=j.image.name+" \u2014 "+j.image.width+"\u00d7"+j.image.height+" "+j.image.format;
  }catch(e){setStatus("request failed: "+e,true);}
}
const q="render=1&threshold=0.05";
$("file").addEventListener("change",e=>{const f=e.target.files[0]; if(!f) return; const fd=new FormData(); fd.append("file",f,f.name); detect("/detect?"+q,fd);});
$("slices").addEventListener("change",e=>{if(e.target.value) detect("/detect?"+q+"&slice="+encodeURIComponent(e.target.value),null);});
$("thr").addEventListener("input",draw);
fetch("/slices").then(r=>r.json()).then(j=>{
  if(!j.slices||!j.slices.length) return;
  $("chooser").style.display="";
  j.slices.forEach(s=>{const o=document.createElement("option");o.value=s;o.textContent=s;$("slices").appendChild(o);});
  const want=new URLSearchParams(location.search).get("slice");
  if(want&&j.slices.includes(want)){$("slices").value=want;detect("/detect?"+q+"&slice="+encodeURIComponent(want),null);}
}).catch(()=>{});
const t0=new URLSearchParams(location.search).get("threshold"); if(t0){$("thr").value=t0;}
draw();
</script></body></html>
)HTML";

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
}

}  // namespace

std::string serve_page_html(const std::string& model, const std::string& version, float threshold) {
  std::string page = kPage;
  char thr[32];
  std::snprintf(thr, sizeof thr, "%.2f", double(threshold < 0.05f ? 0.05f : threshold));
  replace_all(page, "@MODEL@", html_escape(model));
  replace_all(page, "@VERSION@", html_escape(version));
  replace_all(page, "@THRESHOLD@", thr);
  return page;
}

}  // namespace ctdet
