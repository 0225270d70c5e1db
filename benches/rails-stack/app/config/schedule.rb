every 1.day, at: "4:30 am" do
  runner "Member.count"
end
